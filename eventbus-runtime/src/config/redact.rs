//! What is secret, known in one place: every `Debug`, `Display` and error message that shows a
//! database URL, a connection string or a Kafka setting goes through these functions.
//!
//! - a URL's userinfo password: `postgres://app:***@db/x`;
//! - `key=value` pairs whose key names a secret (`password`, `sslpassword`, anything with
//!   `password`, `secret` or `passphrase` in it), in a URL's query (`?password=...`) or a
//!   key/value connection string (`host=db password=... dbname=x`, `Password=...;`), quoted
//!   values included;
//! - librdkafka's sensitive properties ([`SENSITIVE_PROPERTIES`]) and any property whose name
//!   holds `password`, `secret`, `passphrase` or `private`, or ends in `.pem`;
//! - in librdkafka's errors, the value of a sensitive or unknown property and every secret the
//!   configuration holds.

/// What a secret is shown as.
pub const MASK: &str = "***";

/// The properties librdkafka itself marks sensitive (`_RK_SENSITIVE` in its `rdkafka_conf.c`,
/// version 2.12, which rdkafka 0.39 builds) and redacts in its own configuration dumps.
pub const SENSITIVE_PROPERTIES: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
];

/// True when a key of a connection string, a URL query or a configuration names a secret.
pub(crate) fn names_a_secret(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    ["password", "secret", "passphrase"]
        .iter()
        .any(|word| key.contains(word))
        || matches!(key.as_str(), "pwd" | "pass")
}

/// True when the librdkafka property `name` holds a secret: one librdkafka marks sensitive, or
/// one whose name says so.
pub fn is_sensitive_property(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    SENSITIVE_PROPERTIES.contains(&lower.as_str())
        || names_a_secret(&lower)
        || lower.contains("private")
        || lower.ends_with(".pem")
}

/// `text` (a database URL, a connection string, or a message holding one) with every password
/// replaced by `***`: the userinfo password of a URL, and the value of every `key=value` pair
/// whose key names a secret.
///
/// ```
/// use eventbus::config::redact;
/// assert_eq!(redact("postgres://app:hunter2@db/x"), "postgres://app:***@db/x");
/// assert_eq!(redact("postgres://db/x?user=app&password=hunter2"), "postgres://db/x?user=app&password=***");
/// assert_eq!(redact("host=db password='a b' dbname=x"), "host=db password=*** dbname=x");
/// ```
pub fn redact(text: &str) -> String {
    redact_pairs(&redact_userinfo(text))
}

/// Every `scheme://user:password@` in `text` with its password masked. The userinfo runs to the
/// last `@` before the next whitespace, so a password holding `@`, `/` or `?` is masked whole.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme + 3);
        out.push_str(head);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        match url.rfind('@') {
            Some(at) => {
                let userinfo = &url[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Every `key=value` (also `key = value`, `key='quoted value'`) whose key names a secret, with
/// its value masked; a value ends at whitespace, `&`, `;`, `#` or a closing quote.
fn redact_pairs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            i += 1;
            continue;
        }
        // The key: the word just before `=` (spaces allowed between).
        let mut key_end = i;
        while key_end > 0 && bytes[key_end - 1] == b' ' {
            key_end -= 1;
        }
        let mut key_start = key_end;
        while key_start > 0
            && (bytes[key_start - 1].is_ascii_alphanumeric()
                || matches!(bytes[key_start - 1], b'_' | b'.' | b'-'))
        {
            key_start -= 1;
        }
        if key_start == key_end || !names_a_secret(&text[key_start..key_end]) {
            i += 1;
            continue;
        }
        let mut start = i + 1;
        while start < bytes.len() && bytes[start] == b' ' {
            start += 1;
        }
        let end = match bytes.get(start) {
            Some(&quote @ (b'\'' | b'"')) => {
                let mut j = start + 1;
                while j < bytes.len() && bytes[j] != quote {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                (j + 1).min(bytes.len())
            }
            _ => {
                let mut j = start;
                while j < bytes.len()
                    && !bytes[j].is_ascii_whitespace()
                    && !matches!(bytes[j], b'&' | b';' | b'#')
                {
                    j += 1;
                }
                j
            }
        };
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
        i = end.max(i + 1);
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// `text` with each of `secrets` (values the configuration holds) replaced by `***`; empty and
/// one-character secrets are left alone (they would mask unrelated text, and guard nothing).
pub(crate) fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_owned();
    let mut secrets: Vec<&str> = secrets.into_iter().filter(|s| s.len() > 1).collect();
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
        }
    }
    out
}

/// librdkafka's error with the value of a sensitive or unknown property (an unknown one may be a
/// misspelt secret) masked, and every secret of `config` scrubbed from its text.
#[cfg(feature = "kafka")]
pub(crate) fn kafka_error(
    error: rdkafka::error::KafkaError,
    config: Option<&super::KafkaConfig>,
) -> rdkafka::error::KafkaError {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let secrets: Vec<&str> = config.map(super::KafkaConfig::secrets).unwrap_or_default();
    match error {
        KafkaError::ClientConfig(result, description, key, value) => {
            let hide =
                is_sensitive_property(&key) || result == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN;
            let mut description = scrub(&description, secrets.iter().copied());
            let value = if hide && !value.is_empty() {
                description = description.replace(&value, MASK);
                MASK.to_owned()
            } else {
                scrub(&value, secrets.iter().copied())
            };
            KafkaError::ClientConfig(result, description, key, value)
        }
        KafkaError::ClientCreation(text) => KafkaError::ClientCreation(scrub(&text, secrets)),
        other => other,
    }
}

/// The text of librdkafka's `error`, redacted as [`kafka_error`] does (for errors whose
/// configuration is not at hand).
#[cfg(feature = "kafka")]
pub(crate) fn kafka_error_text(error: &rdkafka::error::KafkaError) -> String {
    kafka_error(error.clone(), None).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact("sqlite:///tmp/x.db?mode=rwc"),
            "sqlite:///tmp/x.db?mode=rwc"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        // A password holding `@`, `/`, `:` or `?` is masked whole.
        assert_eq!(
            redact("postgres://app:p@ss/w:o?rd@db/x"),
            "postgres://app:***@db/x"
        );
        // In a sentence, each URL.
        assert_eq!(
            redact("cannot use postgres://a:s1@h/x nor postgresql://b:s2@h/y now"),
            "cannot use postgres://a:***@h/x nor postgresql://b:***@h/y now"
        );
    }

    #[test]
    fn secret_pairs_are_masked() {
        assert_eq!(
            redact("postgres://db/x?user=app&password=hunter2&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://db/x?sslpassword=k3y&PASSWORD=p4ss"),
            "postgres://db/x?sslpassword=***&PASSWORD=***"
        );
        assert_eq!(
            redact("host=db user=app password=hunter2 dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact("host=db password = 'two words' dbname=x"),
            "host=db password = *** dbname=x"
        );
        assert_eq!(
            redact("Server=db;Password=hunter2;Database=x"),
            "Server=db;Password=***;Database=x"
        );
        assert_eq!(redact("a=b c==d password="), "a=b c==d password=***");
    }

    #[test]
    fn sensitive_properties_follow_librdkafka() {
        for p in SENSITIVE_PROPERTIES {
            assert!(is_sensitive_property(p), "{p}");
        }
        assert!(is_sensitive_property("SASL.PASSWORD"));
        assert!(is_sensitive_property("ssl.certificate.pem"));
        assert!(is_sensitive_property("ssl.truststore.password"));
        assert!(!is_sensitive_property("linger.ms"));
        assert!(!is_sensitive_property("ssl.ca.location"));
        assert!(!is_sensitive_property("sasl.mechanism"));
    }

    #[test]
    fn known_secrets_are_scrubbed() {
        assert_eq!(
            scrub("failed: abc and abcdef", ["abc", "abcdef", "", "x"]),
            "failed: *** and ***"
        );
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_config_errors_hide_secret_values() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaConfRes;
        let error = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cret\" for configuration property \"sasl.oauthbearer.config\""
                .into(),
            "sasl.oauthbearer.config".into(),
            "s3cret".into(),
        );
        let shown = kafka_error_text(&error);
        assert!(
            !shown.contains("s3cret") && shown.contains("sasl.oauthbearer.config"),
            "{shown}"
        );
        let unknown = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            "No such configuration property: \"sasl.pasword\"".into(),
            "sasl.pasword".into(),
            "hunter2".into(),
        );
        let shown = kafka_error_text(&unknown);
        assert!(
            !shown.contains("hunter2") && shown.contains("sasl.pasword"),
            "{shown}"
        );
        let plain = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"most\" for configuration property \"acks\"".into(),
            "acks".into(),
            "most".into(),
        );
        assert!(kafka_error_text(&plain).contains("most"));
    }
}
