//! The summary printed at the end of a run.

use std::time::Instant;

use eventbus::EventBus;

use crate::consumers::{CONSUMERS, Shared, lock};
use crate::orders::OrderPlaced;
use crate::{Orders, ms};

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Prints the summary; what was lost or dead-lettered.
pub(crate) fn summary(
    bus: &EventBus<Orders>,
    seen: &Shared,
    consumers: &[eventbus::consumer::ConsumerHandle],
    started: Instant,
    expected: u64,
) -> Vec<String> {
    let seen = lock(seen);
    println!(
        "
delivered per topic (this run):"
    );
    for (topic, n) in &seen.per_topic {
        println!("  {n:>4}  {topic}");
    }
    let relay = bus.relay_stats();
    let (published, relay_retried, relay_dead) = relay
        .map(|r| (r.published(), r.retried(), r.dead_lettered()))
        .unwrap_or_default();
    let stats: Vec<_> = consumers.iter().map(|c| c.stats()).collect();
    let handled: u64 = stats.iter().map(|s| s.handled()).sum();
    let retried: u64 = stats.iter().map(|s| s.retried()).sum();
    let dead: u64 = stats.iter().map(|s| s.dead_lettered()).sum();
    let mut lat = seen.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    println!(
        "
relay: {published} published, {relay_retried} retried, {relay_dead} dead-lettered; consumers: {handled} handled, {retried} retried, {dead} dead-lettered"
    );
    println!(
        "commit-to-delivery (OrderPlaced → payments): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms over {} events",
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.len()
    );
    println!("done in {}", ms(started).trim());
    let payments = seen.per_topic.get(OrderPlaced::TOPIC).copied().unwrap_or(0);
    let lost = [
        ("OrderPlaced delivered to payments", payments),
        ("confirmations delivered", seen.confirmed),
        ("audit records delivered", seen.audited),
    ];
    let mut failures = Vec::new();
    for (what, n) in lost {
        if n < expected {
            failures.push(format!("lost: {what}: {n} of {expected}"));
        }
    }
    if relay_dead > 0 {
        failures.push(format!(
            "the relay dead-lettered {relay_dead} event(s): Kafka refused them {} times each; see why with `eventbus-relay dead` (the outbox's dead table), replay with `eventbus-relay replay`",
            eventbus::OutboxConfig::default().max_attempts
        ));
    }
    for (name, s) in CONSUMERS.iter().zip(&stats) {
        if s.dead_lettered() > 0 {
            failures.push(format!(
                "the consumer `{name}` dead-lettered {} event(s) after their last retry: their handler kept failing (the `tracing` warnings above name the event and the error; the records are on `<topic>.dlq`)",
                s.dead_lettered()
            ));
        }
    }
    if failures.is_empty() {
        println!("every order was placed, paid and confirmed; nothing lost");
    }
    failures
}
