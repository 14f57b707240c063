//! Metrics (AD-007) through the `metrics` facade, on both layers: with a recorder installed, a
//! Transactional bus, its relay and a consumer report what they did, and a health check sets the
//! outbox gauges.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use eventbus::EventBus;
use eventbus_tests::{OrderPlaced, Petstore};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Every metric registered, by `name{label=value,...}`.
#[derive(Default)]
struct Captured {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(AtomicU64);

impl metrics::HistogramFn for Samples {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct Shared(&'static Captured);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut all = self.0.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(all.entry(id(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut all = self.0.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(all.entry(id(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut all = self.0.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(all.entry(id(key)).or_default()))
    }
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<&'static Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured: &'static Captured = Box::leak(Box::default());
        metrics::set_global_recorder(Shared(captured)).unwrap();
        captured
    })
}

fn counter(name: &str) -> u64 {
    captured()
        .counters
        .lock()
        .unwrap()
        .get(name)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// How many publishes were timed, over every label set.
fn publish_samples() -> u64 {
    captured()
        .histograms
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("eventbus_publish_duration_seconds"))
        .map(|(_, s)| s.0.load(Ordering::Relaxed))
        .sum()
}

fn gauge(name: &str) -> Option<f64> {
    captured()
        .gauges
        .lock()
        .unwrap()
        .get(name)
        .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_the_relay_and_consumers_report_through_the_metrics_facade() {
    for layer in support::layers().await {
        let published_before =
            counter("eventbus_published_total{mode=transactional,service=petstore}");
        let bus = support::transactional_bus(&layer).await;
        let group = format!("metrics-{}", uuid::Uuid::now_v7().simple());
        let consumer = support::idle_order_consumer(&bus, &group).await;
        let stats = consumer.stats();
        let handled_before = stats.handled();
        bus.publish_all(&OrderPlaced::numbered(5)).await.unwrap();
        let relayed = format!("eventbus_relay_published_total{{table={}}}", layer.table);
        let relayed_before = counter(&relayed);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let pending = format!("eventbus_outbox_pending{{table={}}}", layer.table);
        // The relay counts a batch once its rows are marked and reads the backlog for its gauges
        // after the batch, both of which may follow the consumer's handling: wait for all three.
        while stats.handled() < handled_before + 5
            || counter(&relayed) < relayed_before + 5
            || gauge(&pending).is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: handled, relayed and the outbox gauges set",
                layer.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        assert_eq!(
            counter("eventbus_published_total{mode=transactional,service=petstore}")
                - published_before,
            5,
            "{}",
            layer.name
        );
        assert_eq!(
            counter(&relayed) - relayed_before,
            5,
            "{}: the relay of this layer's outbox",
            layer.name
        );
        // The group reads the topic from its start, so the consumer may still be handling earlier
        // runs' records: compare the two counts at a moment it is quiet.
        let exported = format!("eventbus_consumer_handled_total{{group={group}}}");
        loop {
            let counted = stats.handled();
            let seen = counter(&exported);
            if seen == counted && stats.handled() == counted {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: the exported count is the consumer's own ({seen} exported, {counted} counted)",
                layer.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The relay read the backlog after its first batch, before any health check.
        assert!(
            gauge(&pending).is_some(),
            "{}: the relay sets the outbox gauges",
            layer.name
        );
        let health = bus.health(Duration::from_secs(10)).await;
        assert_eq!(health.backlog.unwrap().pending, 0);
        assert_eq!(
            gauge(&format!("eventbus_outbox_pending{{table={}}}", layer.table)),
            Some(0.0),
            "{}",
            layer.name
        );
        assert_eq!(
            gauge(&format!("eventbus_outbox_dead{{table={}}}", layer.table)),
            Some(0.0)
        );
        consumer.shutdown().await;
        bus.shutdown().await;
    }
    // Every publish is timed.
    let timed = publish_samples();
    let testing = EventBus::testing(Petstore);
    testing
        .publish_domain(&OrderPlaced::numbered(1)[0])
        .await
        .unwrap();
    let after = publish_samples();
    assert_eq!(after, timed + 1, "one publish, one sample");
}
