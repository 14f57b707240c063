//! The Direct mode: an idempotent producer; a publish awaits the broker's acknowledgement.

use crate::bus::Receipt;
use crate::config::KafkaConfig;
use crate::envelope::Envelope;
use crate::error::PublishError;
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
        let delivery = self.enqueue(envelope)?;
        delivered(envelope, delivery.await)
    }

    /// Sends every envelope, then awaits every acknowledgement.
    pub(crate) async fn send_all(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Receipt>, PublishError> {
        let mut pending = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            pending.push(self.hand_over(envelope)?);
        }
        self.acknowledged(pending).await
    }

    /// Hands `envelope` to the producer and drops it (its topic moves into the pending receipt).
    pub(crate) fn hand_over(&self, envelope: Envelope) -> Result<Pending, PublishError> {
        let delivery = self.enqueue(&envelope)?;
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

    /// Hands `envelope` to the producer's queue.
    fn enqueue(
        &self,
        envelope: &Envelope,
    ) -> Result<rdkafka::producer::DeliveryFuture, PublishError> {
        let record = crate::kafka::record(envelope, crate::kafka::headers(envelope));
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
