//! Metrics (the seed's AD-007) through the [`metrics`] facade: install any exporter (Prometheus,
//! StatsD, OpenTelemetry) with its crate before building buses and consumers, and these appear.
//! With no exporter installed they cost an atomic add.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `eventbus_published_total` | counter | `service`, `mode` | events accepted: acknowledged by Kafka (Direct), written to the outbox (Transactional), recorded (Testing) |
//! | `eventbus_publish_failures_total` | counter | `service`, `mode` | publishes that returned an error |
//! | `eventbus_publish_duration_seconds` | histogram | `service`, `mode` | one `publish`, to the broker's acknowledgement in the Direct mode |
//! | `eventbus_relay_published_total` | counter | `table` | events the relay got acknowledged |
//! | `eventbus_relay_retried_total` | counter | `table` | failed sends to be retried |
//! | `eventbus_relay_dead_total` | counter | `table` | events moved to the dead table |
//! | `eventbus_relay_batches_total` | counter | `table` | batches sent |
//! | `eventbus_outbox_pending` | gauge | `table` | rows waiting, read every 5 s by each relay and by each [`EventBus::health`](crate::EventBus::health) |
//! | `eventbus_outbox_oldest_pending_seconds` | gauge | `table` | the oldest waiting row's age, same |
//! | `eventbus_outbox_dead` | gauge | `table` | dead rows, same |
//! | `eventbus_consumer_handled_total` | counter | `group` | records whose handlers all succeeded |
//! | `eventbus_consumer_retried_total` | counter | `group` | failed attempts retried |
//! | `eventbus_consumer_dead_lettered_total` | counter | `group` | records sent to the dead-letter topic |
//! | `eventbus_consumer_skipped_total` | counter | `group` | records no handler wanted (never decoded) |
//! | `eventbus_consumer_duplicates_total` | counter | `group` | redeliveries the inbox skipped |

use std::fmt;

use crate::outbox::Backlog;
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
pub(crate) fn set_backlog(table: &str, backlog: &Backlog) {
    let gauge = |name: &'static str| metrics::gauge!(name, "table" => table.to_owned());
    gauge("eventbus_outbox_pending").set(backlog.pending as f64);
    gauge("eventbus_outbox_oldest_pending_seconds")
        .set(backlog.oldest_pending.map_or(0.0, |d| d.as_secs_f64()));
    gauge("eventbus_outbox_dead").set(backlog.dead as f64);
}
