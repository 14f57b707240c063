//! Topic names (AD-004): a segment is `[a-z0-9_-]+`, a topic is dot-separated segments of at most
//! [`MAX_TOPIC_LEN`] characters.

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

/// The first character of `value` a topic segment may not hold (`[a-z0-9_-]` only).
pub fn invalid_char(value: &str) -> Option<char> {
    value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
}

/// A topic segment is `[a-z0-9_-]+`; the error says what is wrong with `value`.
pub fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty; a topic segment is `[a-z0-9_-]+`".to_owned());
    }
    match invalid_char(value) {
        Some(bad) => Err(format!(
            "contains {bad:?}; a topic segment may contain only `a-z`, `0-9`, `_` and `-`"
        )),
        None => Ok(()),
    }
}

/// A topic is dot-separated segments, at most [`MAX_TOPIC_LEN`] characters.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic {topic:?} is {} characters long; Kafka accepts at most {MAX_TOPIC_LEN}",
            topic.len()
        ));
    }
    topic
        .split('.')
        .try_for_each(check_segment)
        .map_err(|reason| format!("topic {topic:?}: a segment {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_topics() {
        assert!(check_segment("order_placed-2").is_ok());
        assert!(check_segment("").unwrap_err().contains("empty"));
        assert!(check_segment("Order").unwrap_err().contains("'O'"));
        assert!(check_topic("domain.petstore.order").is_ok());
        assert!(check_topic("domain..order").unwrap_err().contains("empty"));
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert!(check_topic(&long).unwrap_err().contains("249"));
    }
}
