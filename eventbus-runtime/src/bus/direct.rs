//! The Direct mode: an idempotent producer; a publish awaits the broker's acknowledgement.

use crate::bus::{EventBus, Receipt, conform};
use crate::config::KafkaConfig;
use crate::envelope::Envelope;
use crate::error::PublishError;
use crate::event::{Event, OwnedBy, Service};
use crate::kafka::EmbeddedKafka;

/// A record handed to the producer, its acknowledgement not yet awaited.
pub(crate) struct Pending {
    event_id: uuid::Uuid,
    topic: std::borrow::Cow<'static, str>,
    delivery: rdkafka::producer::DeliveryFuture,
}

/// The Direct mode's state.
pub(crate) struct DirectBackend {
    pub(crate) producer: rdkafka::producer::FutureProducer,
    pub(crate) kafka: KafkaConfig,
    pub(crate) _embedded: Option<EmbeddedKafka>,
}

impl DirectBackend {
    /// Sends one envelope and awaits its acknowledgement.
    pub(crate) async fn send(&self, envelope: &Envelope) -> Result<Receipt, PublishError> {
        let delivery = self.enqueue(envelope, &envelope.payload)?;
        delivered(envelope, delivery.await)
    }

    /// Hands `envelope` with `payload` to the producer and drops it (its topic moves into the
    /// pending receipt).
    pub(crate) fn hand_over(
        &self,
        envelope: Envelope,
        payload: &[u8],
    ) -> Result<Pending, PublishError> {
        let delivery = self.enqueue(&envelope, payload)?;
        Ok(Pending {
            event_id: envelope.id,
            topic: envelope.topic,
            delivery,
        })
    }

    /// Awaits the acknowledgement of every record [`DirectBackend::hand_over`] sent, in order.
    pub(crate) async fn acknowledged(
        &self,
        pending: Vec<Pending>,
    ) -> Result<Vec<Receipt>, PublishError> {
        let mut receipts = Vec::with_capacity(pending.len());
        for p in pending {
            receipts.push(receipt(p.event_id, p.topic, p.delivery.await)?);
        }
        Ok(receipts)
    }

    /// Hands `envelope`, with `payload`, to the producer's queue.
    fn enqueue(
        &self,
        envelope: &Envelope,
        payload: &[u8],
    ) -> Result<rdkafka::producer::DeliveryFuture, PublishError> {
        let record = crate::kafka::record_of(
            &envelope.topic,
            envelope.key.as_deref(),
            payload,
            crate::kafka::headers(envelope),
        );
        self.producer
            .send_result(record)
            .map_err(|(source, _)| PublishError::Kafka {
                event_id: envelope.id,
                topic: envelope.topic.to_string(),
                source,
            })
    }

    /// Waits (up to 10 s) for what the producer still holds.
    pub(crate) fn flush(&self) {
        use rdkafka::producer::Producer as _;
        let _ = self.producer.flush(std::time::Duration::from_secs(10));
    }
}

/// The receipt of a delivery, or the error Kafka gave.
fn delivered<Canceled>(
    envelope: &Envelope,
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
) -> Result<Receipt, PublishError> {
    receipt(envelope.id, envelope.topic.clone(), result)
}

/// The receipt of the delivery of event `event_id` to `topic`, or the error Kafka gave.
fn receipt<Canceled>(
    event_id: uuid::Uuid,
    topic: std::borrow::Cow<'static, str>,
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
) -> Result<Receipt, PublishError> {
    match result {
        Ok(Ok(delivery)) => Ok(Receipt {
            event_id,
            topic,
            partition: Some(delivery.partition),
            offset: Some(delivery.offset),
        }),
        Ok(Err((source, _))) => Err(PublishError::Kafka {
            event_id,
            topic: topic.into_owned(),
            source,
        }),
        Err(_) => Err(PublishError::Kafka {
            event_id,
            topic: topic.into_owned(),
            source: rdkafka::error::KafkaError::Canceled,
        }),
    }
}

impl<S: Service> EventBus<S> {
    /// [`EventBus::publish_all`] in Direct mode: every event's payload and key are made and
    /// checked first, so nothing is sent when one of them is refused; then each envelope is
    /// built, handed to the producer and dropped in turn, as a hand-written producer would (the
    /// batch is never in memory as envelopes: that cost page faults and cache misses). The
    /// payloads are written one after another into one buffer, not one allocation each: a batch
    /// of separate payloads, all alive until the batch is sent, left the allocator's free lists
    /// fragmented for every allocation after them (`docs/benchmarks.md`, "Direct mode"); the
    /// envelopes carry an empty payload, and the record takes its slice of the buffer.
    pub(super) async fn send_all_direct<E>(
        &self,
        direct: &DirectBackend,
        events: &[E],
    ) -> Result<Vec<Receipt>, PublishError>
    where
        E: Event + OwnedBy<S>,
    {
        let mut payloads = Vec::new();
        // Each event's key and where its payload ends in `payloads`.
        let mut parts = Vec::with_capacity(events.len());
        for event in events {
            let key = event.partition_key();
            conform::typed_key::<E>(key.as_deref())?;
            Envelope::write_payload(event, &mut payloads)?;
            parts.push((payloads.len(), key));
        }
        let span = crate::trace::publish(self.operation(), E::TOPIC, events.len());
        let result = super::traced(span.clone(), async {
            let mut pending = Vec::with_capacity(events.len());
            let mut start = 0;
            for (event, (end, key)) in events.iter().zip(parts) {
                let mut envelope = Envelope::with_parts(event, &self.context, Vec::new(), key);
                conform::no_empty_subject(&mut envelope);
                crate::trace::stamp_each(&span, &mut envelope, events.len());
                pending.push(direct.hand_over(envelope, &payloads[start..end])?);
                start = end;
            }
            direct.acknowledged(pending).await
        })
        .await;
        self.count_published(events.len(), result.is_ok());
        result
    }
}
