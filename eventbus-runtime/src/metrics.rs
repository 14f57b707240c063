//! The crate's own counts, exported through the [`metrics`] facade: install any exporter
//! (Prometheus, StatsD, OpenTelemetry) with its crate before building buses and consumers, and they
//! appear; with no exporter installed they cost an atomic add. Each metric is listed on the item
//! it counts: [`EventBus`](crate::EventBus) (publishing), `RelayStats`, `ConsumerStats`, and
//! `Backlog` (the outbox gauges).
//!
//! Dead letters and lag (docs/operations.md, "Metrics"):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `eventbus_relay_dead_lettered_total` | `table`, `class` | the relay's dead letters, by [`ErrorClass`](crate::dlq::ErrorClass) |
//! | `eventbus_consumer_dead_lettered_total` | `group`, `class` | a consumer's dead letters, by class |
//! | `eventbus_dead_letters` | `table`, `class` | rows in the dead table `{table}_dead` (the relay, every 5 s) |
//! | `eventbus_dead_letters` | `topic`, `class` | records in a dead-letter topic (the operations API's `/metrics`, at most every 30 s) |
//! | `eventbus_dead_letter_oldest_age_seconds` | the same | how long the oldest of them has been dead |
//! | `eventbus_consumer_lag` | `group`, `topic`, `partition` | records behind: the high watermark minus the group's committed offset (every 5 s) |

use std::fmt;

use std::sync::atomic::{AtomicU64, Ordering};

/// A count kept here (for `stats()`) and exported through the facade.
pub(crate) struct Counted {
    value: AtomicU64,
    exported: metrics::Counter,
}

impl Counted {
    pub(crate) fn new(exported: metrics::Counter) -> Self {
        Counted {
            value: AtomicU64::new(0),
            exported,
        }
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.exported.increment(n);
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl Default for Counted {
    fn default() -> Self {
        Counted::new(metrics::Counter::noop())
    }
}

impl fmt::Debug for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// A count of dead letters, kept per class (for `stats()`) and exported as one counter per class,
/// labelled `class` besides `label`.
pub(crate) struct ByClass {
    values: [AtomicU64; 6],
    exported: [metrics::Counter; 6],
}

impl ByClass {
    /// The counter `name{label, class}`, registered for every class (so each shows from 0).
    pub(crate) fn new(name: &'static str, label: (&'static str, &str)) -> Self {
        ByClass {
            values: Default::default(),
            exported: crate::dlq::ErrorClass::ALL.map(|class| {
                metrics::counter!(name, label.0 => label.1.to_owned(), "class" => class.as_str())
            }),
        }
    }

    pub(crate) fn add(&self, class: crate::dlq::ErrorClass) {
        let i = class as usize;
        self.values[i].fetch_add(1, Ordering::Relaxed);
        self.exported[i].increment(1);
    }

    /// Every class.
    pub(crate) fn get(&self) -> u64 {
        self.values.iter().map(|v| v.load(Ordering::Relaxed)).sum()
    }

    /// One class.
    pub(crate) fn of(&self, class: crate::dlq::ErrorClass) -> u64 {
        self.values[class as usize].load(Ordering::Relaxed)
    }
}

impl Default for ByClass {
    fn default() -> Self {
        ByClass {
            values: Default::default(),
            exported: std::array::from_fn(|_| metrics::Counter::noop()),
        }
    }
}

impl fmt::Debug for ByClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// Dead letters of one place (a dead table or a dead-letter topic) and one class: how many, and
/// the age of the oldest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeadCount {
    /// The class's name, or `unknown` (a dead row written before classes were kept).
    pub(crate) class: String,
    pub(crate) count: i64,
    pub(crate) oldest: std::time::Duration,
}

/// Sets the dead-letter gauges of one place (`label` = `table` or `topic`, its name): a class
/// counted before and not now is set to 0. `before` holds the classes set last time, per place.
pub(crate) fn set_dead_letters(
    label: (&'static str, &str),
    counts: &[DeadCount],
    before: &mut std::collections::BTreeSet<String>,
) {
    let gauge = |name: &'static str, class: &str| metrics::gauge!(name, label.0 => label.1.to_owned(), "class" => class.to_owned());
    let now: std::collections::BTreeSet<String> = counts.iter().map(|c| c.class.clone()).collect();
    for gone in before.difference(&now) {
        gauge("eventbus_dead_letters", gone).set(0.0);
        gauge("eventbus_dead_letter_oldest_age_seconds", gone).set(0.0);
    }
    for c in counts {
        gauge("eventbus_dead_letters", &c.class).set(c.count as f64);
        gauge("eventbus_dead_letter_oldest_age_seconds", &c.class).set(c.oldest.as_secs_f64());
    }
    *before = now;
}

/// Sets the outbox gauges of `table`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn set_backlog(table: &str, backlog: &crate::outbox::Backlog) {
    let gauge = |name: &'static str| metrics::gauge!(name, "table" => table.to_owned());
    gauge("eventbus_outbox_pending").set(backlog.pending as f64);
    gauge("eventbus_outbox_oldest_pending_seconds")
        .set(backlog.oldest_pending.map_or(0.0, |d| d.as_secs_f64()));
    gauge("eventbus_outbox_dead").set(backlog.dead as f64);
}
