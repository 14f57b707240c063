//! The circuit breaker: after repeated failures the consumer pauses instead of burning retries
//! against a failing downstream.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Opens and closes after repeated failures: while open, consumption pauses instead of burning
/// retries against a failing downstream.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// When the circuit closes again, in milliseconds since `epoch`; 0 when closed. Read on every
    /// record, so an atomic rather than a lock.
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Counts one outcome: a success closes the count, the `threshold`-th failure in a row opens
    /// the circuit for the cooldown.
    pub(crate) fn record(&self, ok: bool) {
        // A success needs no clock (it runs for every record handled).
        self.record_at(ok, if ok { 0 } else { self.now_ms() });
    }

    fn record_at(&self, ok: bool, now_ms: u64) {
        if ok {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
        } else if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            let until = now_ms + self.cooldown.as_millis() as u64;
            self.open_until_ms.store(until.max(1), Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(cooldown = ?self.cooldown, "eventbus consumer: circuit breaker open; pausing");
        }
    }

    /// How long to stay paused, if open.
    pub(crate) fn open_for(&self) -> Option<Duration> {
        // Closed (the usual case, asked for every record): no clock read.
        if self.open_until_ms.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.open_for_at(self.now_ms())
    }

    fn open_for_at(&self, now: u64) -> Option<Duration> {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        if until > now {
            Some(Duration::from_millis(until - now))
        } else {
            self.open_until_ms.store(0, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row_and_closes_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(1_000));
        breaker.record_at(false, 10);
        breaker.record_at(false, 20);
        assert_eq!(
            breaker.open_for_at(20),
            None,
            "two failures of three: closed"
        );
        breaker.record_at(false, 30);
        assert_eq!(breaker.open_for_at(30), Some(Duration::from_millis(1_000)));
        assert_eq!(breaker.open_for_at(530), Some(Duration::from_millis(500)));
        assert_eq!(
            breaker.open_for_at(1_030),
            None,
            "closed at the end of the cooldown"
        );
        assert_eq!(breaker.open_for_at(1_031), None);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_millis(100));
        breaker.record_at(false, 1);
        breaker.record_at(true, 2);
        breaker.record_at(false, 3);
        assert_eq!(
            breaker.open_for_at(3),
            None,
            "the failures were not in a row"
        );
        breaker.record_at(false, 4);
        assert!(breaker.open_for_at(4).is_some());
    }

    #[test]
    fn the_default_threshold_never_opens() {
        let breaker = Breaker::new(u32::MAX, Duration::from_secs(30));
        for t in 0..10_000 {
            breaker.record_at(false, t);
        }
        assert_eq!(breaker.open_for_at(10_000), None);
    }
}
