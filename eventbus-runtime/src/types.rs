//! Field types of YAML schemas that have no one obvious Rust type: a timestamp, a date, a decimal,
//! bytes. Each has one JSON form, the one the generated JSON Schema describes, so producers in
//! other languages write what a Rust consumer reads.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::format_description::well_known::Rfc3339;

/// A UUID (`uuid` in a schema): a JSON string `"0190c5a2-..."`.
pub type Uuid = uuid::Uuid;

/// Free JSON (`json` in a schema): any JSON value.
pub type Json = serde_json::Value;

/// A point in time (`timestamp` in a schema): an RFC 3339 string, `"2024-05-01T12:00:00Z"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub time::OffsetDateTime);

impl Timestamp {
    /// The current time, in UTC.
    pub fn now() -> Self {
        Timestamp(time::OffsetDateTime::now_utc())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        time::OffsetDateTime::parse(&text, &Rfc3339)
            .map(Timestamp)
            .map_err(|e| de::Error::custom(format!("`{text}` is not an RFC 3339 timestamp: {e}")))
    }
}

/// A calendar date (`date` in a schema): a string `"2024-05-01"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub time::Date);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = (self.0.year(), u8::from(self.0.month()), self.0.day());
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Date {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a date: write `YYYY-MM-DD`");
        let mut parts = text.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let y: i32 = y.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        let d: u8 = d.parse().map_err(|_| bad())?;
        let month = time::Month::try_from(m).map_err(|_| bad())?;
        time::Date::from_calendar_date(y, month, d)
            .map(Date)
            .map_err(|_| bad())
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// An exact decimal number (`decimal` in a schema), e.g. an amount of money: a JSON string
/// `"12.50"`, so no consumer reads it through a binary float. Arithmetic is the user's choice of
/// crate (`rust_decimal`, `bigdecimal`): convert from [`Decimal::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    /// The JSON Schema `pattern` a decimal matches.
    pub const PATTERN: &'static str = "^-?[0-9]+(\\.[0-9]+)?$";

    /// The decimal's text, `-?[0-9]+(.[0-9]+)?`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Decimal {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if all_digits(int) && all_digits(frac) {
            Ok(Decimal(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is not a decimal: write digits with an optional `-` and `.`, e.g. \"12.50\""
            ))
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// Binary data (`bytes` in a schema): a standard base64 JSON string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| de::Error::custom(format!("bytes are standard base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() -> Result<(), Box<dyn std::error::Error>> {
        let date: Date = serde_json::from_str("\"2024-02-29\"")?;
        assert_eq!(serde_json::to_string(&date)?, "\"2024-02-29\"");
        assert!(serde_json::from_str::<Date>("\"2023-02-29\"").is_err());
        let ts: Timestamp = serde_json::from_str("\"2024-05-01T12:00:00Z\"")?;
        assert_eq!(serde_json::to_string(&ts)?, "\"2024-05-01T12:00:00Z\"");
        let dec: Decimal = serde_json::from_str("\"-12.50\"")?;
        assert_eq!(dec.as_str(), "-12.50");
        assert!(serde_json::from_str::<Decimal>("\"1e5\"").is_err());
        let bytes: Bytes = serde_json::from_str("\"aGk=\"")?;
        assert_eq!(bytes.0, b"hi");
        assert_eq!(serde_json::to_string(&bytes)?, "\"aGk=\"");
        Ok(())
    }
}
