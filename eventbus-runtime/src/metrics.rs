//! The crate's own counts, exported through the [`metrics`] facade: install any exporter
//! (Prometheus, StatsD, OpenTelemetry) with its crate before building buses and consumers, and they
//! appear; with no exporter installed they cost an atomic add. Each metric is listed on the item
//! it counts: [`EventBus`](crate::EventBus) (publishing), `RelayStats`, `ConsumerStats`, and
//! `Backlog` (the outbox gauges).

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

/// Sets the outbox gauges of `table`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn set_backlog(table: &str, backlog: &crate::outbox::Backlog) {
    let gauge = |name: &'static str| metrics::gauge!(name, "table" => table.to_owned());
    gauge("eventbus_outbox_pending").set(backlog.pending as f64);
    gauge("eventbus_outbox_oldest_pending_seconds")
        .set(backlog.oldest_pending.map_or(0.0, |d| d.as_secs_f64()));
    gauge("eventbus_outbox_dead").set(backlog.dead as f64);
}
