//! Topic name rules (AD-004), checked at run time for events built at run time. The derives check
//! the same rules at compile time (`eventbus-codegen`'s model).

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

/// A topic segment is `[a-z0-9_-]+`.
pub fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty; a topic segment is `[a-z0-9_-]+`".to_owned());
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
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
