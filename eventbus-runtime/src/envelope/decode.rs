//! The two decoders of a record's CloudEvents attributes: [`Envelope::from_record`] builds an
//! envelope (and says what is wrong), [`RawAttributes`] reads the attributes the consumer's fast
//! path needs straight from the raw headers. A unit test keeps them in agreement.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::Envelope;
use super::headers::{self, CLOUDEVENTS_VERSION, JSON};
use crate::error::DecodeError;
use crate::event::Category;

impl Envelope {
    /// Rebuilds an envelope from a record: its topic, key, headers and value.
    ///
    /// The record must carry the CloudEvents attributes `ce_specversion` (`1.0`), `ce_id` (a
    /// UUID), `ce_source` and `ce_type`; every other attribute is optional. Without the record's
    /// context (a consumer knows more), what is missing reads as: `ce_category` → integration,
    /// `ce_schemaversion` → 1, `ce_time` → now, `content-type` → `application/json`. A consumer
    /// takes the category and version from the handler of the record's type instead, and the
    /// time from the record's timestamp (see `docs/consumers.md`, "Records from other
    /// producers").
    pub fn from_record<'h>(
        topic: &str,
        key: Option<&[u8]>,
        record_headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        let raw = RawAttributes::read(record_headers);
        let attributes = raw.check()?;
        let key = key_of(key)?;
        let defaults = Defaults {
            category: attributes.category.unwrap_or(Category::Integration),
            version: attributes.version.unwrap_or(1),
            time: OffsetDateTime::now_utc(),
        };
        Ok(attributes.into_envelope(topic, key, &defaults, payload.to_vec()))
    }

    /// The envelope's attributes, as the consumer's verdict reads them.
    pub(crate) fn attributes(&self) -> Attributes<'_> {
        Attributes {
            id: self.id,
            source: &self.source,
            event_type: &self.event_type,
            time: Some(self.time),
            subject: self.subject.as_deref(),
            content_type: Some(&self.content_type),
            category: Some(self.category),
            version: Some(self.version),
            correlation_id: self.correlation_id.as_deref(),
            causation_id: self.causation_id.as_deref(),
            traceparent: self.traceparent.as_deref(),
            tracestate: self.tracestate.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            tags: Tags::List(&self.tags),
        }
    }
}

/// A record key as text: keys are UTF-8 (an event's partition key is a string).
pub(crate) fn key_of(key: Option<&[u8]>) -> Result<Option<&str>, DecodeError> {
    key.map(|k| {
        std::str::from_utf8(k).map_err(|_| DecodeError::BadHeader {
            header: "key".to_owned(),
            reason: "the record key is not UTF-8".to_owned(),
        })
    })
    .transpose()
}

/// The CloudEvents attributes of a record, as raw header values, read in one pass. Headers of
/// other names are ignored (they may be binary).
#[derive(Default)]
pub(crate) struct RawAttributes<'a> {
    spec_version: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    event_type: Option<&'a [u8]>,
    time: Option<&'a [u8]>,
    subject: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
    category: Option<&'a [u8]>,
    schema_version: Option<&'a [u8]>,
    correlation_id: Option<&'a [u8]>,
    causation_id: Option<&'a [u8]>,
    traceparent: Option<&'a [u8]>,
    tracestate: Option<&'a [u8]>,
    tenant_id: Option<&'a [u8]>,
    tags: Option<&'a [u8]>,
}

impl<'a> RawAttributes<'a> {
    /// Reads every header; of a name given twice, the last one counts. Names are text or bytes (a
    /// name that is not UTF-8 is no attribute's).
    pub(crate) fn read<'n, N: AsRef<[u8]> + ?Sized + 'n>(
        record_headers: impl IntoIterator<Item = (&'n N, &'a [u8])>,
    ) -> Self {
        let mut raw = RawAttributes::default();
        for (name, value) in record_headers {
            if let Some(slot) = raw.slot(name.as_ref()) {
                *slot = Some(value);
            }
        }
        raw
    }

    /// The field of attribute `name`: dispatched on the name's length and fifth byte (one
    /// attribute each), then the whole name compared.
    #[inline]
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<&'a [u8]>> {
        use super::headers as h;
        if name.len() < 5 {
            return None;
        }
        // Each name compared as a constant: no call to `memcmp`.
        Some(match (name.len(), name[4]) {
            (5, b'd') if name == h::ID.as_bytes() => &mut self.id,
            (7, b'y') if name == h::TYPE.as_bytes() => &mut self.event_type,
            (7, b'i') if name == h::TIME.as_bytes() => &mut self.time,
            (7, b'a') if name == h::TAGS.as_bytes() => &mut self.tags,
            (9, b'o') if name == h::SOURCE.as_bytes() => &mut self.source,
            (10, b'u') if name == h::SUBJECT.as_bytes() => &mut self.subject,
            (11, b'a') if name == h::CATEGORY.as_bytes() => &mut self.category,
            (11, b'e') if name == h::TENANT_ID.as_bytes() => &mut self.tenant_id,
            (12, b'e') if name == h::CONTENT_TYPE.as_bytes() => &mut self.content_type,
            (13, b'r') if name == h::TRACESTATE.as_bytes() => &mut self.tracestate,
            (14, b'p') if name == h::SPEC_VERSION.as_bytes() => &mut self.spec_version,
            (14, b'a') if name == h::CAUSATION_ID.as_bytes() => &mut self.causation_id,
            (14, b'r') if name == h::TRACEPARENT.as_bytes() => &mut self.traceparent,
            (16, b'c') if name == h::SCHEMA_VERSION.as_bytes() => &mut self.schema_version,
            (16, b'o') if name == h::CORRELATION_ID.as_bytes() => &mut self.correlation_id,
            _ => return None,
        })
    }

    /// The one validation of a record's attributes, before any handler runs, whatever path the
    /// record takes: required ones present, every attribute read UTF-8, and each typed one
    /// well-formed when present.
    pub(crate) fn check(&self) -> Result<Attributes<'a>, DecodeError> {
        self.check_knowing(&[])
    }

    /// [`Self::check`], with the event types a consumer handles: a `ce_type` equal to one of them
    /// is text already (the same check, without reading the bytes again).
    pub(crate) fn check_knowing(
        &self,
        event_types: &[&'static str],
    ) -> Result<Attributes<'a>, DecodeError> {
        // The checks report a small `Problem`; the message is written only for a bad record.
        self.checked(event_types).map_err(|p| self.describe(p))
    }

    fn checked(&self, event_types: &[&'static str]) -> Result<Attributes<'a>, Problem> {
        #[inline]
        fn text<'v>(
            header: &'static str,
            value: Option<&'v [u8]>,
        ) -> Result<Option<&'v str>, Problem> {
            match value {
                None => Ok(None),
                Some(v) => std::str::from_utf8(v)
                    .map(Some)
                    .map_err(|_| Problem(header, Why::NotUtf8)),
            }
        }
        fn required<'v>(header: &'static str, value: Option<&'v [u8]>) -> Result<&'v str, Problem> {
            match text(header, value)? {
                None => Err(Problem(header, Why::Missing)),
                Some("") => Err(Problem(header, Why::Empty)),
                Some(v) => Ok(v),
            }
        }
        // Optional text attributes: an empty one (which CloudEvents forbids) reads as absent.
        #[inline]
        fn optional<'v>(
            header: &'static str,
            value: Option<&'v [u8]>,
        ) -> Result<Option<&'v str>, Problem> {
            text(header, value).map(|v| v.filter(|v| !v.is_empty()))
        }
        // Each typed attribute first tries the form eventbus writes, from the raw bytes (what it
        // accepts is ASCII, so UTF-8, and reads the same as below); anything else goes through the
        // general check, which gives the same value or names the problem. The order of the checks,
        // so the problem reported first, is unchanged.
        if self.spec_version != Some(CLOUDEVENTS_VERSION.as_bytes())
            && required(headers::SPEC_VERSION, self.spec_version)? != CLOUDEVENTS_VERSION
        {
            return Err(Problem(headers::SPEC_VERSION, Why::Unsupported));
        }
        // `Uuid::try_parse` is `try_parse_ascii` of the text's bytes.
        let id = match self.id.map(Uuid::try_parse_ascii) {
            Some(Ok(id)) => id,
            _ => Uuid::try_parse(required(headers::ID, self.id)?)
                .map_err(|_| Problem(headers::ID, Why::Malformed))?,
        };
        let source = required(headers::SOURCE, self.source)?;
        // (An empty one is no known type: CloudEvents requires a value.)
        let known = |v: &[u8]| {
            event_types
                .iter()
                .copied()
                .find(|t| !t.is_empty() && t.as_bytes() == v)
        };
        let event_type = match self.event_type.and_then(known) {
            Some(t) => t,
            None => required(headers::TYPE, self.event_type)?,
        };
        let time = match self.time.and_then(utc_time) {
            Some(t) => Some(t),
            None => match text(headers::TIME, self.time)? {
                None => None,
                Some(t) => Some(
                    OffsetDateTime::parse(t, &Rfc3339)
                        .map_err(|_| Problem(headers::TIME, Why::Malformed))?,
                ),
            },
        };
        let category = match self.category.and_then(category_of) {
            Some(c) => Some(c),
            None => match text(headers::CATEGORY, self.category)? {
                None => None,
                Some(c) => {
                    Some(Category::parse(c).ok_or(Problem(headers::CATEGORY, Why::Malformed))?)
                }
            },
        };
        let version = match self.schema_version.and_then(small_number) {
            Some(n) => Some(n),
            None => match text(headers::SCHEMA_VERSION, self.schema_version)? {
                None => None,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => return Err(Problem(headers::SCHEMA_VERSION, Why::Malformed)),
                },
            },
        };
        Ok(Attributes {
            id,
            source,
            event_type,
            time,
            subject: optional(headers::SUBJECT, self.subject)?,
            content_type: match self.content_type {
                Some(t) if t == JSON.as_bytes() => Some(JSON),
                t => optional(headers::CONTENT_TYPE, t)?,
            },
            category,
            version,
            correlation_id: optional(headers::CORRELATION_ID, self.correlation_id)?,
            causation_id: optional(headers::CAUSATION_ID, self.causation_id)?,
            traceparent: optional(headers::TRACEPARENT, self.traceparent)?,
            tracestate: optional(headers::TRACESTATE, self.tracestate)?,
            tenant_id: optional(headers::TENANT_ID, self.tenant_id)?,
            tags: Tags::Joined(optional(headers::TAGS, self.tags)?),
        })
    }

    /// The error of `problem`, with the value it is about.
    fn describe(&self, Problem(header, why): Problem) -> DecodeError {
        let value = self
            .get(header)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let reason = match why {
            Why::Missing => return DecodeError::MissingHeader(header),
            Why::NotUtf8 => "not UTF-8".to_owned(),
            Why::Empty => "empty (CloudEvents requires a value)".to_owned(),
            Why::Unsupported => format!(
                "unsupported version {value} (this consumer reads CloudEvents {CLOUDEVENTS_VERSION})"
            ),
            Why::Malformed => match header {
                headers::ID => format!(
                    "{value:?} is not a UUID ({})",
                    Uuid::try_parse(&value)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ),
                headers::TIME => format!(
                    "{value:?} is not an RFC 3339 time ({})",
                    OffsetDateTime::parse(&value, &Rfc3339)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ),
                headers::CATEGORY => format!(
                    "unknown category {value:?} (one of {})",
                    Category::ALL.map(Category::as_str).join(", ")
                ),
                _ => format!("{value:?} is not a number from 1"),
            },
        };
        DecodeError::BadHeader {
            header: header.to_owned(),
            reason,
        }
    }

    /// The raw value of attribute `name`.
    fn get(&self, name: &str) -> Option<&'a [u8]> {
        use super::headers as h;
        match name {
            h::SPEC_VERSION => self.spec_version,
            h::ID => self.id,
            h::SOURCE => self.source,
            h::TYPE => self.event_type,
            h::TIME => self.time,
            h::SUBJECT => self.subject,
            h::CONTENT_TYPE => self.content_type,
            h::CATEGORY => self.category,
            h::SCHEMA_VERSION => self.schema_version,
            h::CORRELATION_ID => self.correlation_id,
            h::CAUSATION_ID => self.causation_id,
            h::TRACEPARENT => self.traceparent,
            h::TRACESTATE => self.tracestate,
            h::TENANT_ID => self.tenant_id,
            h::TAGS => self.tags,
            _ => None,
        }
    }
}

/// What is wrong with a record's attribute (see [`RawAttributes::check`]).
#[derive(Debug, Clone, Copy)]
struct Problem(&'static str, Why);

#[derive(Debug, Clone, Copy)]
enum Why {
    Missing,
    NotUtf8,
    Empty,
    Unsupported,
    Malformed,
}

/// A time in the form eventbus writes (`2026-12-04T10:40:00.123456789Z`: UTC, no leap second,
/// up to nine fractional digits), from the bytes: what the RFC 3339 parser reads it as. Anything
/// else (another offset or separator, a leap second, a date or time out of range): `None`, for the
/// general parser, which gives the value or the error.
fn utc_time(v: &[u8]) -> Option<OffsetDateTime> {
    let end = v.len().checked_sub(1)?;
    if end < 19
        || v[4] != b'-'
        || v[7] != b'-'
        || v[10] != b'T'
        || v[13] != b':'
        || v[16] != b':'
        || v[end] != b'Z'
    {
        return None;
    }
    // Every digit checked at once, then the fields read without further checks.
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().any(|&i| !v[i].is_ascii_digit()) {
        return None;
    }
    let two = |i: usize| (v[i] - b'0') * 10 + (v[i + 1] - b'0');
    let nanosecond = match end {
        19 => 0,
        // A point and one to nine digits before the `Z`.
        21..=29 if v[19] == b'.' => {
            let mut n = 0u32;
            for &c in &v[20..end] {
                if !c.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + u32::from(c - b'0');
            }
            n * 10u32.pow(29 - end as u32)
        }
        _ => return None,
    };
    let second = two(17);
    if second > 59 {
        return None;
    }
    let year = i32::from(two(0)) * 100 + i32::from(two(2));
    let month = time::Month::try_from(two(5)).ok()?;
    let date = time::Date::from_calendar_date(year, month, two(8)).ok()?;
    let time = time::Time::from_hms_nano(two(11), two(14), second, nanosecond).ok()?;
    Some(OffsetDateTime::new_utc(date, time))
}

/// The category whose name is exactly `value` (what `Category::parse` accepts), from the bytes.
fn category_of(value: &[u8]) -> Option<Category> {
    Category::ALL
        .into_iter()
        .find(|c| c.as_str().as_bytes() == value)
}

/// A schema version of one to nine ASCII digits, not 0, from the bytes: what `str::parse::<u32>`
/// reads as the same number. Anything else (a sign, more digits, 0): `None`, for the general check.
fn small_number(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    (n > 0).then_some(n)
}

/// A record's tags: as the `ce_tags` header carries them (comma-separated), or as a list.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tags<'a> {
    Joined(Option<&'a str>),
    List(&'a [String]),
}

impl Tags<'_> {
    /// True when some tag passes `test` (empty tags never do).
    pub(crate) fn any(&self, test: impl Fn(&str) -> bool) -> bool {
        match self {
            Tags::Joined(joined) => {
                joined.is_some_and(|j| j.split(',').any(|t| !t.is_empty() && test(t)))
            }
            Tags::List(list) => list.iter().any(|t| !t.is_empty() && test(t)),
        }
    }
}

/// A record's CloudEvents attributes, checked ([`RawAttributes::check`]); those a foreign
/// producer may leave out are options.
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    pub(crate) id: Uuid,
    pub(crate) source: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) time: Option<OffsetDateTime>,
    pub(crate) subject: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) category: Option<Category>,
    pub(crate) version: Option<u32>,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) causation_id: Option<&'a str>,
    pub(crate) traceparent: Option<&'a str>,
    pub(crate) tracestate: Option<&'a str>,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) tags: Tags<'a>,
}

/// What fills in the attributes a record does not carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) category: Category,
    pub(crate) version: u32,
    pub(crate) time: OffsetDateTime,
}

impl Attributes<'_> {
    /// True when the payload is JSON: no `content-type` (JSON is the default), or
    /// `application/json`, or a `+json` type, parameters aside.
    pub(crate) fn is_json(&self) -> bool {
        self.content_type.is_none_or(|t| {
            if t == JSON {
                return true;
            }
            let essence = t.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case(JSON)
                || essence
                    .rsplit_once('+')
                    .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
        })
    }

    /// The envelope of these attributes, with `defaults` for what the record lacks.
    pub(crate) fn into_envelope(
        self,
        topic: &str,
        key: Option<&str>,
        defaults: &Defaults,
        payload: Vec<u8>,
    ) -> Envelope {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        let tags = match self.tags {
            Tags::Joined(joined) => joined
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Tags::List(list) => list.to_vec(),
        };
        Envelope {
            id: self.id,
            source: self.source.to_owned().into(),
            event_type: self.event_type.to_owned().into(),
            time: self.time.unwrap_or(defaults.time),
            subject: owned(self.subject),
            topic: topic.to_owned().into(),
            key: owned(key),
            category: self.category.unwrap_or(defaults.category),
            version: self.version.unwrap_or(defaults.version),
            content_type: match self.content_type {
                None | Some(JSON) => Cow::Borrowed(JSON),
                Some(other) => Cow::Owned(other.to_owned()),
            },
            correlation_id: owned(self.correlation_id),
            causation_id: owned(self.causation_id),
            traceparent: owned(self.traceparent),
            tracestate: owned(self.tracestate),
            tenant_id: owned(self.tenant_id),
            tags,
            payload,
        }
    }
}

#[cfg(test)]
mod tests;
