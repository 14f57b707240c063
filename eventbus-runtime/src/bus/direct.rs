//! The Direct mode: an idempotent producer; a publish awaits the broker's acknowledgement.

use crate::bus::Receipt;
use crate::config::KafkaConfig;
use crate::envelope::Envelope;
use crate::error::PublishError;
use crate::kafka::EmbeddedKafka;

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

    /// Sends every envelope, then awaits every acknowledgement. Each envelope is dropped once the
    /// producer has its record (its topic moves into the receipt), so a large batch does not stay
    /// in memory twice.
    pub(crate) async fn send_all(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Receipt>, PublishError> {
        let mut pending = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let delivery = self.enqueue(&envelope)?;
            pending.push((envelope.id, envelope.topic, delivery));
        }
        let mut receipts = Vec::with_capacity(pending.len());
        for (event_id, topic, delivery) in pending {
            receipts.push(receipt(event_id, topic, delivery.await)?);
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
                topic: envelope.topic.clone(),
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
    topic: String,
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
            topic,
            source,
        }),
        Err(_) => Err(PublishError::Kafka {
            event_id,
            topic,
            source: rdkafka::error::KafkaError::Canceled,
        }),
    }
}
