//! The Transactional mode: events are written to the outbox, inside the caller's transaction
//! (`enqueue`) or one of their own (`publish`); a relay publishes them.

use std::sync::Arc;

use crate::bus::Receipt;
#[cfg(feature = "kafka")]
use crate::config::KafkaConfig;
use crate::envelope::Envelope;
use crate::error::PublishError;
use crate::event::Event;
use crate::outbox::{Generated, OutboxStore, OutboxTransaction};

/// The Transactional mode's state: the outbox, and the relay the bus runs in process (if any).
pub(crate) struct TransactionalBackend {
    pub(crate) store: OutboxStore,
    pub(crate) shards: u32,
    /// Wakes the in-process relay after a write (SQLite has no LISTEN/NOTIFY).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    #[cfg(feature = "kafka")]
    pub(crate) kafka: Option<KafkaConfig>,
    #[cfg(feature = "kafka")]
    pub(crate) relay: std::sync::Mutex<Option<crate::relay::RelayHandle>>,
    #[cfg(feature = "kafka")]
    pub(crate) relay_stats: Option<Arc<crate::relay::RelayStats>>,
    #[cfg(feature = "kafka")]
    pub(crate) _embedded: Option<crate::kafka::EmbeddedKafka>,
}

impl TransactionalBackend {
    /// Writes `envelope` (of an `E`) into the caller's `tx` with the statement the derive
    /// generated.
    pub(crate) async fn enqueue<E: Event, T: OutboxTransaction>(
        &self,
        tx: &mut T,
        envelope: &Envelope,
    ) -> Result<(), PublishError> {
        self.enqueue_generated(tx, envelope, Generated::of::<E>())
            .await
    }

    /// Writes `envelope` into the caller's `tx` with `generated`, the statement of its type.
    pub(crate) async fn enqueue_generated<T: OutboxTransaction>(
        &self,
        tx: &mut T,
        envelope: &Envelope,
        generated: Generated,
    ) -> Result<(), PublishError> {
        self.store
            .insert(tx, envelope, Some(generated), self.shards)
            .await
            .map_err(|source| self.error(envelope, source))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Writes `envelopes` in one transaction of their own: with the generated statement of their
    /// type when it is known, else (events built at run time) the outbox's own INSERT.
    pub(crate) async fn write(
        &self,
        envelopes: &[Envelope],
        generated: Option<Generated>,
    ) -> Result<Vec<Receipt>, PublishError> {
        self.store
            .write(envelopes, generated, self.shards)
            .await
            .map_err(|(envelope, source)| self.error(&envelopes[envelope], source))?;
        self.wake.notify_one();
        Ok(envelopes.iter().map(Receipt::recorded).collect())
    }

    fn error(&self, envelope: &Envelope, source: crate::outbox::WriteError) -> PublishError {
        match source {
            crate::outbox::WriteError::Dialect(message) => PublishError::Invalid(message),
            crate::outbox::WriteError::Database(source) => PublishError::Outbox {
                event_id: envelope.id,
                table: self.store.table().to_owned(),
                source,
            },
        }
    }

    /// Stops the in-process relay after the batches in hand.
    pub(crate) async fn shutdown(&self) {
        #[cfg(feature = "kafka")]
        {
            let relay = crate::lock(&self.relay).take();
            if let Some(relay) = relay
                && let Err(e) = relay.shutdown().await
            {
                tracing::warn!(error = %e, "eventbus: relay did not stop cleanly");
            }
        }
    }
}
