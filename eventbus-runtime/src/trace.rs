//! Spans along a record's path, named and attributed after OpenTelemetry's messaging semantic
//! conventions: the publish (`create {topic}` into the outbox, `send {topic}` straight to Kafka),
//! the relay's batch (`send`) and each record it sends (`send {topic}`), and each delivery to a
//! consumer (`process {topic}`), with its attempts. The table of spans and attributes is in
//! `docs/operations.md` ("Traces").
//!
//! They are plain `tracing` spans, always there: without a subscriber that wants them, a span
//! costs a level check and nothing is formatted (`otel.name` is written only on an enabled span;
//! the other fields are borrowed values or `Display` wrappers). The relay's span per record is at
//! `DEBUG`, the others at `INFO`.
//!
//! With the feature `opentelemetry` (`otel` below), the W3C trace context travels with the event:
//! the publish span's goes into `ce_traceparent`/`ce_tracestate` (and so into the outbox row's
//! headers), the relay's send spans link to it, and the consumer's process span takes it as its
//! parent, through `tracing-opentelemetry`.

use tracing::Span;
use tracing::field::{Empty, display};
use uuid::Uuid;

use crate::envelope::Envelope;

/// True when nothing can hear a span: no `tracing` subscriber was ever set, and no `log` logger
/// listens. `tracing` then forwards each disabled span's fields to `log` (its feature `log`, which
/// sqlx turns on), building them for every record only to drop them; the spans made per event or
/// per record are `Span::none()` instead.
fn unheard() -> bool {
    !tracing::dispatcher::has_been_set() && log::max_level() == log::LevelFilter::Off
}

/// `messaging.system`: Kafka, the broker every record goes through.
const SYSTEM: &str = "kafka";

/// The span of a publish or enqueue of `count` events of one topic: `operation` is `create` (into
/// the outbox: the relay sends later) or `send` (to the broker, or the in-memory transport). Its
/// context is the events' creation context; [`stamp`] writes it into them.
pub(crate) fn publish(operation: &'static str, topic: &str, count: usize) -> Span {
    if unheard() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "eventbus.publish",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = SYSTEM,
        "messaging.operation.type" = operation,
        messaging.operation.name = operation,
        messaging.destination.name = topic,
        messaging.message.id = Empty,
        messaging.kafka.message.key = Empty,
        messaging.batch.message_count = Empty,
        "error.type" = Empty,
    );
    name(&span, format_args!("{operation} {topic}"));
    if count != 1 {
        span.record("messaging.batch.message_count", count);
    }
    span
}

/// Names an enabled span for OpenTelemetry (`otel.name`, the conventions' `{operation}
/// {destination}`). Recorded after the span is made, not in its fields: `tracing` evaluates a
/// disabled span's fields when it forwards to `log` (no subscriber set, feature `log`), and the
/// name would be formatted for every record.
fn name(span: &Span, name: std::fmt::Arguments<'_>) {
    if !span.is_disabled() {
        span.record("otel.name", display(name));
    }
}

/// Writes the context of `span` (a [`publish`] span) into `envelopes` and records the message's
/// id and key on it. With the feature `opentelemetry`, when OpenTelemetry records the span: the
/// span's W3C context replaces `ce_traceparent`/`ce_tracestate`; and a span that would start a new
/// trace (no span around the publish) continues the one the first envelope carries instead.
pub(crate) fn stamp(span: &Span, envelopes: &mut [Envelope]) {
    if span.is_disabled() {
        return;
    }
    if let [one] = envelopes {
        span.record("messaging.message.id", display(one.id));
        if let Some(key) = &one.key {
            span.record("messaging.kafka.message.key", key.as_str());
        }
    }
    #[cfg(feature = "opentelemetry")]
    otel::stamp(span, envelopes);
}

/// [`stamp`] for one envelope of a batch of `count` built one at a time: its context is
/// written into it; its id and key go on the span only when it is the batch's one event.
pub(crate) fn stamp_each(span: &Span, envelope: &mut Envelope, count: usize) {
    if span.is_disabled() {
        return;
    }
    if count == 1 {
        stamp(span, std::slice::from_mut(envelope));
    } else {
        #[cfg(feature = "opentelemetry")]
        otel::stamp(span, std::slice::from_mut(envelope));
    }
}

/// Marks `span` failed with `error_type` (low-cardinality: a kind of error, not a message).
pub(crate) fn failed(span: &Span, error_type: impl tracing::Value) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "error");
    span.record("error.type", error_type);
}

/// Marks a send span failed with Kafka's error code (`MessageSizeTooLarge`, ...).
#[cfg(feature = "kafka")]
pub(crate) fn failed_kafka(span: &Span, error: &rdkafka::error::KafkaError) {
    match error.rdkafka_error_code() {
        Some(code) => failed(span, tracing::field::debug(code)),
        None => failed(span, "kafka"),
    }
}

/// The relay's span of one batch of `count` outbox rows of table `table`. With the feature
/// `opentelemetry`, [`link_row`] links it to each row's creation context.
#[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
pub(crate) fn relay_batch(table: &str, count: usize) -> Span {
    tracing::info_span!(
        "eventbus.relay.batch",
        otel.name = "send",
        otel.kind = "producer",
        messaging.system = SYSTEM,
        "messaging.operation.type" = "send",
        messaging.operation.name = "send",
        messaging.batch.message_count = count,
        eventbus.outbox.table = table,
        eventbus.relay.acknowledged = Empty,
    )
}

/// The relay's span of one row sent to Kafka, up to its acknowledgement (`DEBUG`: one per record;
/// the batch span carries the links at `INFO`). The partition and offset are recorded when Kafka
/// acknowledges it ([`acknowledged`]).
#[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
pub(crate) fn relay_send(topic: &str, id: Uuid, key: Option<&str>) -> Span {
    if unheard() {
        return Span::none();
    }
    let span = tracing::debug_span!(
        "eventbus.relay.send",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = SYSTEM,
        "messaging.operation.type" = "send",
        messaging.operation.name = "send",
        messaging.destination.name = topic,
        messaging.message.id = display(id),
        messaging.kafka.message.key = key,
        messaging.destination.partition.id = Empty,
        messaging.kafka.offset = Empty,
        "error.type" = Empty,
    );
    name(&span, format_args!("send {topic}"));
    span
}

/// Links `span` (the relay's) to the creation context an outbox row keeps in its headers (feature
/// `opentelemetry`; nothing otherwise).
#[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
#[inline]
pub(crate) fn link_row(span: &Span, headers: &crate::outbox::RowHeaders) {
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        let parent = headers.get(crate::envelope::headers::TRACEPARENT);
        let state = headers.get(crate::envelope::headers::TRACESTATE);
        otel::link(span, parent.as_deref(), state.as_deref());
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, headers);
}

/// Records where Kafka put a record on its send span.
#[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
pub(crate) fn acknowledged(span: &Span, partition: i32, offset: i64) {
    // A disabled span still looks its fields up by name: not per record for nothing.
    if span.is_disabled() {
        return;
    }
    span.record("messaging.destination.partition.id", display(partition));
    span.record("messaging.kafka.offset", offset);
}

/// Where a consumer got a record: Kafka's partition and offset (none on a Testing bus).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivered<'a> {
    pub(crate) topic: &'a str,
    pub(crate) group: &'a str,
    pub(crate) partition: Option<(i32, i64)>,
    pub(crate) id: Option<Uuid>,
    pub(crate) key: Option<&'a str>,
    /// The record's `ce_traceparent` and `ce_tracestate`.
    pub(crate) trace: (Option<&'a str>, Option<&'a str>),
}

/// The span of one delivery to a consumer: every attempt, the retries, the dead-lettering. With
/// the feature `opentelemetry` its parent is the record's creation context (so it continues the
/// producer's trace), when the record carries one.
pub(crate) fn process(delivered: Delivered<'_>) -> Span {
    if unheard() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "eventbus.process",
        otel.name = Empty,
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = SYSTEM,
        "messaging.operation.type" = "process",
        messaging.operation.name = "process",
        messaging.destination.name = delivered.topic,
        messaging.consumer.group.name = delivered.group,
        messaging.destination.partition.id = delivered.partition.map(|(p, _)| display(p)),
        messaging.kafka.offset = delivered.partition.map(|(_, o)| o),
        messaging.message.id = delivered.id.map(display),
        messaging.kafka.message.key = delivered.key,
        eventbus.attempts = Empty,
        "error.type" = Empty,
    );
    name(&span, format_args!("process {}", delivered.topic));
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        otel::continue_from(&span, delivered.trace.0, delivered.trace.1);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = delivered.trace;
    span
}

/// The span of one attempt of a consumer's handlers on a record (`DEBUG`), inside its
/// [`process`] span.
pub(crate) fn attempt(attempt: u32) -> Span {
    if unheard() {
        return Span::none();
    }
    tracing::debug_span!("eventbus.attempt", eventbus.attempt = attempt)
}

/// Records on a [`process`] span that the record was dead-lettered after `attempts`.
pub(crate) fn dead_lettered(span: &Span, attempts: u32, error_type: &'static str) {
    span.record("eventbus.attempts", attempts);
    failed(span, error_type);
}

/// The W3C trace context in CloudEvents attributes, through the OpenTelemetry API.
#[cfg(feature = "opentelemetry")]
mod otel {
    use std::sync::LazyLock;

    use opentelemetry::Context;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use crate::envelope::Envelope;

    /// The propagator's keys, as CloudEvents' distributed-tracing extension names them (its
    /// Kafka binding adds the `ce_` prefix).
    const TRACEPARENT: &str = "traceparent";
    const TRACESTATE: &str = "tracestate";

    /// W3C Trace Context, for when the global propagator writes no `traceparent` (OpenTelemetry's
    /// default global propagator writes nothing; another may use other headers).
    pub(super) static W3C: LazyLock<TraceContextPropagator> =
        LazyLock::new(TraceContextPropagator::new);

    /// A `traceparent` and `tracestate`, as the propagators read and write them.
    #[derive(Default)]
    pub(super) struct Carrier<'a> {
        pub(super) traceparent: Option<std::borrow::Cow<'a, str>>,
        pub(super) tracestate: Option<std::borrow::Cow<'a, str>>,
    }

    impl Injector for Carrier<'_> {
        fn set(&mut self, key: &str, value: String) {
            let slot = match key {
                TRACEPARENT => &mut self.traceparent,
                TRACESTATE => &mut self.tracestate,
                _ => return, // baggage and others: CloudEvents has no attribute for them
            };
            if !value.is_empty() {
                *slot = Some(value.into());
            }
        }
    }

    impl Extractor for Carrier<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                TRACEPARENT => self.traceparent.as_deref(),
                TRACESTATE => self.tracestate.as_deref(),
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            [
                self.traceparent.as_ref().map(|_| TRACEPARENT),
                self.tracestate.as_ref().map(|_| TRACESTATE),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
    }

    /// The context a `traceparent` and `tracestate` carry: through the global propagator, else
    /// W3C Trace Context. `None` without a valid one.
    pub(super) fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
        traceparent?;
        let carrier = Carrier {
            traceparent: traceparent.map(Into::into),
            tracestate: tracestate.map(Into::into),
        };
        // What a propagator read is remote; OpenTelemetry's no-op propagator answers with the
        // current context instead, which is not.
        let valid = |cx: &Context| {
            let span = cx.span();
            let read = span.span_context();
            read.is_valid() && read.is_remote()
        };
        let global = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract_with_context(&Context::new(), &carrier)
        });
        if valid(&global) {
            return Some(global);
        }
        let w3c = W3C.extract_with_context(&Context::new(), &carrier);
        valid(&w3c).then_some(w3c)
    }

    /// See [`super::stamp`].
    pub(super) fn stamp(span: &Span, envelopes: &mut [Envelope]) {
        let Some(first) = envelopes.first() else {
            return;
        };
        // Outside any span the publish span would start a trace of its own: it continues the
        // one the event already carries (set by `EventContext`, or on a forwarded envelope).
        if !Span::current().context().span().span_context().is_valid()
            && let Some(parent) = extract(first.traceparent.as_deref(), first.tracestate.as_deref())
        {
            let _ = span.set_parent(parent);
        }
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return; // not an OpenTelemetry span (no layer, or not sampled in)
        }
        let mut carrier = Carrier::default();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut carrier)
        });
        if carrier.traceparent.is_none() {
            carrier = Carrier::default();
            W3C.inject_context(&context, &mut carrier);
        }
        for envelope in envelopes {
            envelope.traceparent = carrier.traceparent.as_ref().map(|v| v.clone().into_owned());
            envelope.tracestate = carrier.tracestate.as_ref().map(|v| v.clone().into_owned());
        }
    }

    /// Links `span` to the context of `traceparent` and `tracestate`, when valid.
    pub(super) fn link(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
        if let Some(cx) = extract(traceparent, tracestate) {
            span.add_link(cx.span().span_context().clone());
        }
    }

    /// Makes the context of `traceparent` and `tracestate` the parent of `span` (not yet
    /// entered), when valid.
    pub(super) fn continue_from(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
        if let Some(cx) = extract(traceparent, tracestate) {
            let _ = span.set_parent(cx);
        }
    }
}

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    use opentelemetry::Context;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };

    use super::otel::{Carrier, W3C, extract};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn context(trace: u128, span: u64) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ))
    }

    /// OpenTelemetry's default global propagator answers any extraction with the current
    /// context: inside a span, that is not the record's.
    #[test]
    fn a_record_s_context_is_read_even_inside_another_span() {
        let _current = context(1, 2).attach();
        let read = extract(Some(TRACEPARENT), Some("congo=t61rcWkgMzE")).unwrap();
        let read = read.span().span_context().clone();
        assert_eq!(
            read.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            read.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(read.trace_state().header(), "congo=t61rcWkgMzE");
        assert!(extract(None, Some("congo=t61rcWkgMzE")).is_none());
        assert!(extract(Some("00-not-a-trace"), None).is_none());
    }

    #[test]
    fn the_w3c_fallback_writes_traceparent_and_no_empty_tracestate() {
        let mut carrier = Carrier::default();
        W3C.inject_context(
            &context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
            ),
            &mut carrier,
        );
        assert_eq!(carrier.traceparent.as_deref(), Some(TRACEPARENT));
        assert_eq!(carrier.tracestate, None);
    }
}
