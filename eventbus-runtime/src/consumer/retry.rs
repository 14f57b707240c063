//! [`RetryPolicy`]: how a failed record is retried before it is dead-lettered.

use std::time::Duration;

use crate::config::Backoff;

/// How failed handlers are retried before the record goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(10))
            .max_attempts(5)
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter from `initial`, doubling, capped at `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        RetryPolicy {
            backoff: Backoff {
                initial,
                multiplier: 2.0,
                max,
            },
            max_attempts: 5,
            attempt_timeout: None,
        }
    }

    /// No retry: the first failure sends the record to the dead-letter topic.
    pub fn none() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Fails an attempt whose handler has not finished after `limit` (none by default): a handler
    /// stuck on a downstream that never answers is retried, then dead-lettered, instead of holding
    /// its key, and its partition's commits, forever. The handler's future is dropped at the limit;
    /// work it started elsewhere (a spawned task, a request already sent) is not undone.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(limit);
        self
    }

    /// What follows `attempts` failed attempts: the delay before the next one, or `None` when the
    /// record has used up its attempts and goes to the dead-letter topic.
    pub(crate) fn after_failure(&self, attempts: u32) -> Option<Duration> {
        (attempts < self.max_attempts).then(|| self.backoff.delay(attempts))
    }

    /// The limit of one attempt, if any.
    pub(crate) fn attempt_limit(&self) -> Option<Duration> {
        self.attempt_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_retried_with_growing_delays_then_dead_lettered() {
        let policy =
            RetryPolicy::exponential(Duration::from_millis(100), Duration::from_millis(250))
                .max_attempts(4);
        let delays: Vec<_> = (1..=4).map(|a| policy.after_failure(a)).collect();
        assert!(delays[..3].iter().all(Option::is_some), "{delays:?}");
        assert_eq!(
            delays[3], None,
            "the 4th failure of 4 attempts dead-letters"
        );
        let first = delays[0].unwrap();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = delays[1].unwrap();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        // Capped at the maximum, jitter included.
        assert!(delays[2].unwrap() <= Duration::from_millis(250));
    }

    #[test]
    fn none_dead_letters_at_the_first_failure_and_attempts_are_at_least_one() {
        assert_eq!(RetryPolicy::none().after_failure(1), None);
        let zero = RetryPolicy::default().max_attempts(0);
        assert_eq!(zero.after_failure(1), None);
        assert!(RetryPolicy::default().after_failure(4).is_some());
        assert_eq!(
            RetryPolicy::default().after_failure(5),
            None,
            "5 attempts by default"
        );
    }
}
