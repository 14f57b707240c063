//! The two decoders of a record's CloudEvents attributes: [`Envelope::from_record`] builds an
//! envelope (and says what is wrong), [`RawAttributes`] reads the attributes the consumer's fast
//! path needs straight from the raw headers. A unit test keeps them in agreement.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::Envelope;
use super::headers::{self, CLOUDEVENTS_VERSION, JSON};
use crate::error::DecodeError;
use crate::event::Category;

impl Envelope {
    /// Rebuilds an envelope from a record: its topic, key, headers and value.
    pub fn from_record<'h>(
        topic: &str,
        key: Option<&[u8]>,
        record_headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        // Borrowed: a consumer reads every record through here, so no copy until the envelope.
        let mut found: Vec<(&str, &str)> = Vec::with_capacity(16);
        for (name, value) in record_headers {
            let value = std::str::from_utf8(value).map_err(|_| DecodeError::BadHeader {
                header: name.to_owned(),
                reason: "not UTF-8".to_owned(),
            })?;
            found.push((name, value));
        }
        let get_str = |name: &str| found.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let get = |name: &str| get_str(name).map(str::to_owned);
        let require_str =
            |name: &'static str| get_str(name).ok_or(DecodeError::MissingHeader(name));
        let require = |name: &'static str| require_str(name).map(str::to_owned);
        let bad = |header: &str, reason: String| DecodeError::BadHeader {
            header: header.to_owned(),
            reason,
        };

        let spec = require_str(headers::SPEC_VERSION)?;
        if spec != CLOUDEVENTS_VERSION {
            return Err(bad(
                headers::SPEC_VERSION,
                format!("unsupported version {spec}"),
            ));
        }
        let id = require_str(headers::ID)?;
        let time = require_str(headers::TIME)?;
        let category = require_str(headers::CATEGORY)?;
        let version = require_str(headers::SCHEMA_VERSION)?;
        let key = key
            .map(|k| String::from_utf8(k.to_vec()).map_err(|_| bad("key", "not UTF-8".to_owned())))
            .transpose()?;
        Ok(Envelope {
            id: Uuid::parse_str(id).map_err(|e| bad(headers::ID, e.to_string()))?,
            source: require(headers::SOURCE)?,
            event_type: require(headers::TYPE)?,
            time: OffsetDateTime::parse(time, &Rfc3339)
                .map_err(|e| bad(headers::TIME, e.to_string()))?,
            subject: get(headers::SUBJECT),
            topic: topic.to_owned(),
            key,
            category: Category::parse(category)
                .ok_or_else(|| bad(headers::CATEGORY, format!("unknown category {category:?}")))?,
            version: version.parse().map_err(|_| {
                bad(
                    headers::SCHEMA_VERSION,
                    format!("{version:?} is not a number"),
                )
            })?,
            content_type: get(headers::CONTENT_TYPE).unwrap_or_else(|| JSON.to_owned()),
            correlation_id: get(headers::CORRELATION_ID),
            causation_id: get(headers::CAUSATION_ID),
            traceparent: get(headers::TRACEPARENT),
            tenant_id: get(headers::TENANT_ID),
            tags: get_str(headers::TAGS)
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            payload: payload.to_vec(),
        })
    }
}

/// The CloudEvents attributes of a record, as raw header values.
#[derive(Default)]
pub(crate) struct RawAttributes<'a> {
    pub(crate) spec_version: Option<&'a [u8]>,
    pub(crate) id: Option<&'a [u8]>,
    pub(crate) source: Option<&'a [u8]>,
    pub(crate) event_type: Option<&'a [u8]>,
    pub(crate) time: Option<&'a [u8]>,
    pub(crate) category: Option<&'a [u8]>,
    pub(crate) schema_version: Option<&'a [u8]>,
    pub(crate) tenant_id: Option<&'a [u8]>,
    pub(crate) correlation_id: Option<&'a [u8]>,
    pub(crate) tags: Option<&'a [u8]>,
    /// How many of the seven required attributes were seen.
    required: u8,
}

impl<'a> RawAttributes<'a> {
    /// Takes one header; true once every required attribute is in.
    pub(crate) fn set(&mut self, name: &str, value: &'a [u8]) -> bool {
        use super::headers as h;
        let (slot, required) = match name {
            h::SPEC_VERSION => (&mut self.spec_version, true),
            h::ID => (&mut self.id, true),
            h::SOURCE => (&mut self.source, true),
            h::TYPE => (&mut self.event_type, true),
            h::TIME => (&mut self.time, true),
            h::CATEGORY => (&mut self.category, true),
            h::SCHEMA_VERSION => (&mut self.schema_version, true),
            h::TENANT_ID => (&mut self.tenant_id, false),
            h::CORRELATION_ID => (&mut self.correlation_id, false),
            h::TAGS => (&mut self.tags, false),
            _ => return self.required == 7,
        };
        if slot.replace(value).is_none() && required {
            self.required += 1;
        }
        self.required == 7
    }

    /// Every attribute the envelope decoder requires is there, in the version it reads.
    pub(crate) fn complete(&self) -> bool {
        self.required == 7 && self.spec_version == Some(CLOUDEVENTS_VERSION.as_bytes())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a [u8]> {
        use super::headers as h;
        match name {
            h::TYPE => self.event_type,
            h::SOURCE => self.source,
            h::CATEGORY => self.category,
            h::TENANT_ID => self.tenant_id,
            h::CORRELATION_ID => self.correlation_id,
            h::TAGS => self.tags,
            h::ID => self.id,
            h::TIME => self.time,
            h::SCHEMA_VERSION => self.schema_version,
            h::SPEC_VERSION => self.spec_version,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8] = b"0190b2a4-6c5e-7a4e-9a51-0c7c8b4c2a10";

    fn required() -> Vec<(&'static str, &'static [u8])> {
        vec![
            (headers::SPEC_VERSION, b"1.0"),
            (headers::ID, ID),
            (headers::SOURCE, b"petstore"),
            (headers::TYPE, b"petstore.order.order_placed"),
            (headers::TIME, b"2026-01-01T00:00:00Z"),
            (headers::SCHEMA_VERSION, b"2"),
            (headers::CATEGORY, b"domain"),
        ]
    }

    fn raw<'a>(pairs: &[(&str, &'a [u8])]) -> RawAttributes<'a> {
        let mut attrs = RawAttributes::default();
        for (name, value) in pairs {
            attrs.set(name, value);
        }
        attrs
    }

    #[test]
    fn a_complete_record_decodes_both_ways() {
        let mut pairs = required();
        pairs.push((headers::TENANT_ID, b"acme"));
        pairs.push((headers::TAGS, b"blue,,red"));
        let envelope = Envelope::from_record("t", Some(b"k"), pairs.clone(), b"{}").unwrap();
        assert_eq!(envelope.id.to_string().as_bytes(), ID);
        assert_eq!((envelope.version, envelope.category), (2, Category::Domain));
        assert_eq!(envelope.tags, ["blue", "red"]);
        assert_eq!(envelope.content_type, JSON, "content-type defaults to JSON");
        let attrs = raw(&pairs);
        assert!(attrs.complete());
        assert_eq!(
            attrs.get(headers::TYPE),
            Some(&b"petstore.order.order_placed"[..])
        );
        assert_eq!(attrs.get(headers::TENANT_ID), Some(&b"acme"[..]));
        // What an envelope writes, both decoders read back.
        let written = envelope.headers();
        let again = Envelope::from_record(
            "t",
            Some(b"k"),
            written.iter().map(|(k, v)| (*k, v.as_bytes())),
            b"{}",
        )
        .unwrap();
        assert_eq!(again, envelope);
        assert!(
            raw(&written
                .iter()
                .map(|(k, v)| (*k, v.as_bytes()))
                .collect::<Vec<_>>())
            .complete()
        );
    }

    #[test]
    fn the_fast_decoder_stops_once_the_required_attributes_are_in() {
        let mut attrs = RawAttributes::default();
        let pairs = required();
        let (last, first) = pairs.split_last().unwrap();
        for (name, value) in first {
            assert!(
                !attrs.set(name, value),
                "{name} is not the last required one"
            );
        }
        assert!(attrs.set(last.0, last.1));
        assert!(attrs.set("unrelated", b"x"), "complete stays complete");
    }

    #[test]
    fn each_missing_required_attribute_is_named_and_not_complete() {
        for skip in 0..required().len() {
            let mut pairs = required();
            let (name, _) = pairs.remove(skip);
            let error = Envelope::from_record("t", None, pairs.clone(), b"{}").unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
            assert!(!raw(&pairs).complete(), "{name} missing");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let cases: [(&str, &[u8], &str); 5] = [
            (headers::SPEC_VERSION, b"0.3", "unsupported version"),
            (headers::ID, b"not-a-uuid", "ce_id"),
            (headers::TIME, b"yesterday", "ce_time"),
            (headers::SCHEMA_VERSION, b"two", "not a number"),
            (headers::CATEGORY, b"gossip", "unknown category"),
        ];
        for (name, value, expected) in cases {
            let pairs: Vec<_> = required()
                .into_iter()
                .map(|(n, v)| if n == name { (n, value) } else { (n, v) })
                .collect();
            let error = Envelope::from_record("t", None, pairs, b"{}").unwrap_err();
            assert!(error.to_string().contains(expected), "{name}: {error}");
        }
        let error = Envelope::from_record("t", Some(&[0xff, 0xfe]), required(), b"{}").unwrap_err();
        assert!(error.to_string().contains("key"), "{error}");
        let mut bad_utf8 = required();
        bad_utf8.push((headers::TAGS, &[0xff]));
        let error = Envelope::from_record("t", None, bad_utf8, b"{}").unwrap_err();
        assert!(error.to_string().contains("UTF-8"), "{error}");
        // The fast decoder only checks the version; a wrong one is not complete.
        let mut old = required();
        old[0].1 = b"0.3";
        assert!(!raw(&old).complete());
    }
}
