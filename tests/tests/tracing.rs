//! Traces across the whole path, on both layers (feature `opentelemetry`): under a root span, an
//! event enqueued in a transaction, sent by the relay and handled by a typed consumer gives one
//! trace — the enqueue's `create` span a child of the root, the consumer's `process` span a child
//! of it through `ce_traceparent`, the handler's span inside that — and the relay's send spans,
//! in a trace of their own, link to the enqueue's span. OpenTelemetry's messaging attributes are
//! on each span.
//!
//! The subscriber (a `tracing-opentelemetry` layer over an SDK tracer provider exporting to
//! memory) is this binary's global default: the relay and the consumer run on tokio tasks.
//! No global propagator is set, so this also covers the W3C fallback.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eventbus::{Database, EventBus, Service};
use eventbus_tests::{OrderPlaced, OrderPlacedTopic};
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The exporter every span of this binary goes to (installed once).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer =
                tracing_opentelemetry::layer().with_tracer(provider.tracer("eventbus-tests"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .unwrap();
            (exporter, provider)
        })
        .0
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_else(|| panic!("span {:?} has no {key}: {:?}", span.name, span.attributes))
}

/// Links of `span` to the span `to`.
fn links_to(span: &SpanData, to: &SpanData) -> bool {
    span.links.iter().any(|l| {
        l.span_context.trace_id() == to.span_context.trace_id()
            && l.span_context.span_id() == to.span_context.span_id()
    })
}

/// Enqueues `event` in a transaction of the bus's outbox, committed.
async fn enqueue<S: Service>(bus: &EventBus<S>, event: &OrderPlaced) -> uuid::Uuid
where
    OrderPlaced: eventbus::event::OwnedBy<S>,
{
    match bus.outbox().expect("transactional").database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let id = bus.enqueue(&mut tx, event).await.unwrap();
            tx.commit().await.unwrap();
            id
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let id = bus.enqueue(&mut tx, event).await.unwrap();
            tx.commit().await.unwrap();
            id
        }
        Database::Url(_) => unreachable!("a built bus has a pool"),
    }
}

/// The finished spans, once `ready` finds what it needs in them (or after 30 s).
async fn finished(mut ready: impl FnMut(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = exporter().get_finished_spans().unwrap();
        if ready(&spans) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_a_root_span_through_enqueue_relay_and_handler() {
    exporter();
    for layer in support::layers().await {
        let bus = support::transactional_bus(&layer).await;
        let group = format!("tracing-{}", uuid::Uuid::now_v7().simple());
        let placed = OrderPlaced {
            order_id: uuid::Uuid::now_v7(),
            total_cents: 4_200,
        };
        let (handled, mut got) = tokio::sync::mpsc::unbounded_channel();
        let wanted = placed.order_id;
        let consumer = bus
            .consumer(&group)
            .subscribe::<OrderPlacedTopic>()
            .on::<OrderPlaced, _>(move |e: OrderPlaced| {
                let handled = handled.clone();
                async move {
                    if e.order_id == wanted {
                        let _handler = tracing::info_span!("handler").entered();
                        let _ = handled.send(());
                    }
                }
            })
            .start()
            .await
            .unwrap();
        assert!(
            consumer.ready(Duration::from_secs(30)).await,
            "{}",
            layer.name
        );

        let root = tracing::info_span!("root");
        let root_context = root.context().span().span_context().clone();
        assert!(
            root_context.is_valid(),
            "the root span is an OpenTelemetry span"
        );
        let id = enqueue(&bus, &placed).instrument(root.clone()).await;
        drop(root);
        tokio::time::timeout(Duration::from_secs(30), got.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: the handler ran", layer.name));

        let id = id.to_string();
        let topic = <OrderPlacedTopic as eventbus::Topic>::NAME;
        let of_event =
            |s: &SpanData| attribute(s, "messaging.message.id").is_some_and(|v| v.as_str() == id);
        let named = |spans: &[SpanData], name: String| -> Option<SpanData> {
            spans
                .iter()
                .find(|s| s.name == name && of_event(s))
                .cloned()
        };
        let spans = finished(|spans| {
            let (Some(create), Some(_), Some(process)) = (
                named(spans, format!("create {topic}")),
                named(spans, format!("send {topic}")),
                named(spans, format!("process {topic}")),
            ) else {
                return false;
            };
            spans
                .iter()
                .any(|s| s.name == "send" && links_to(s, &create))
                && spans.iter().any(|s| {
                    s.name == "handler" && s.parent_span_id == process.span_context.span_id()
                })
        })
        .await;
        let find = |name: String| {
            named(&spans, name.clone()).unwrap_or_else(|| {
                panic!(
                    "{}: no span {name:?} of event {id} among {:?}",
                    layer.name,
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
        };
        let trace: TraceId = root_context.trace_id();

        // The enqueue: a producer span, child of the root.
        let create = find(format!("create {topic}"));
        assert_eq!(create.span_kind, SpanKind::Producer, "{}", layer.name);
        assert_eq!(create.span_context.trace_id(), trace, "{}", layer.name);
        assert_eq!(
            create.parent_span_id,
            root_context.span_id(),
            "{}",
            layer.name
        );
        assert_eq!(text(&create, "messaging.system"), "kafka");
        assert_eq!(text(&create, "messaging.operation.type"), "create");
        assert_eq!(text(&create, "messaging.destination.name"), topic);
        assert_eq!(
            text(&create, "messaging.kafka.message.key"),
            placed.order_id.to_string()
        );

        // The relay: its send span of the record, and its batch span, link to the enqueue's.
        let send = find(format!("send {topic}"));
        assert_eq!(send.span_kind, SpanKind::Producer, "{}", layer.name);
        assert!(
            links_to(&send, &create),
            "{}: the relay's send span links to the enqueue's ({:?}): {:?}",
            layer.name,
            create.span_context,
            send.links
        );
        assert_eq!(text(&send, "messaging.operation.type"), "send");
        let partition = text(&send, "messaging.destination.partition.id");
        assert!(
            attribute(&send, "messaging.kafka.offset").is_some(),
            "{}",
            layer.name
        );
        let batch = spans
            .iter()
            .find(|s| s.name == "send" && links_to(s, &create))
            .unwrap_or_else(|| panic!("{}: a relay batch span links to the enqueue", layer.name));
        assert_eq!(
            send.parent_span_id,
            batch.span_context.span_id(),
            "{}",
            layer.name
        );
        assert_eq!(text(batch, "eventbus.outbox.table"), layer.table);

        // The consumer: its process span continues the enqueue's trace, the handler inside it.
        let process = find(format!("process {topic}"));
        assert_eq!(process.span_kind, SpanKind::Consumer, "{}", layer.name);
        assert_eq!(
            process.span_context.trace_id(),
            trace,
            "{}: the consumer's span is in the root's trace",
            layer.name
        );
        assert_eq!(
            process.parent_span_id,
            create.span_context.span_id(),
            "{}",
            layer.name
        );
        assert!(process.parent_span_is_remote, "{}", layer.name);
        assert_eq!(text(&process, "messaging.operation.type"), "process");
        assert_eq!(text(&process, "messaging.consumer.group.name"), group);
        assert_eq!(
            text(&process, "messaging.destination.partition.id"),
            partition
        );
        let handler = spans
            .iter()
            .find(|s| s.name == "handler" && s.parent_span_id == process.span_context.span_id())
            .unwrap_or_else(|| {
                panic!(
                    "{}: the handler's span is inside the process span",
                    layer.name
                )
            });
        assert_eq!(handler.span_context.trace_id(), trace, "{}", layer.name);
        assert_ne!(handler.span_context.span_id(), SpanId::INVALID);

        consumer.shutdown().await;
        bus.shutdown().await;
    }
}
