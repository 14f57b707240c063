//! Sending a batch: every row to the producer ([`produce`]), then every acknowledgement
//! ([`Relay::settle`]); a rejected batch is retried row by row so only the culprit counts an
//! attempt; failures back off or go to the dead table (and the dead-letter topic).

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tracing::Instrument as _;

use super::Relay;
use crate::dlq::{DeadLetter, DeadLettered, ErrorClass, RELAY};
use crate::outbox::PendingRow;
use crate::trace;

/// A batch handed to the producer, its acknowledgements not yet awaited ([`produce`]).
pub(super) struct Queued {
    /// The batch's rows.
    rows: Vec<PendingRow>,
    /// Index in `rows`, delivery and send span of each row the producer took.
    in_flight: Vec<(usize, DeliveryFuture, tracing::Span)>,
    /// Index in `rows` and error of each row the producer refused at once.
    failed: Vec<(usize, KafkaError)>,
}

/// What sending one batch did.
pub(super) struct Sent {
    /// The keys whose rows failed or were held back: their later rows wait.
    pub(super) failed_keys: HashSet<String>,
    /// The ids of the rows Kafka acknowledged: the caller deletes (or marks) them with
    /// [`Relay::mark_sent`], while the next batch goes out.
    pub(super) acknowledged: Vec<i64>,
    /// An error that says Kafka cannot be reached, if one came back.
    pub(super) outage: Option<String>,
}

impl Queued {
    /// The ids of the batch's rows.
    pub(super) fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.rows.iter().map(|r| r.id)
    }
}

/// Hands every row of a batch to `producer`, in order, without waiting for Kafka; a row whose
/// key is in `blocked` is left in the outbox, unattempted (an earlier row of its key failed in
/// this drain), and a row the producer refuses at once adds its key to `blocked`.
/// [`Relay::settle`] awaits the acknowledgements.
pub(super) fn produce(
    producer: &FutureProducer,
    rows: Vec<PendingRow>,
    blocked: &mut HashSet<String>,
) -> Queued {
    let mut in_flight = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if !blocked.is_empty() && row.key.as_ref().is_some_and(|key| blocked.contains(key)) {
            continue; // an earlier row of this key failed: keep the order, retry later
        }
        let (record, span) = record_of(row);
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push((index, delivery, span)),
            Err((e, _)) => {
                trace::failed_kafka(&span, &e);
                if let Some(key) = &row.key {
                    blocked.insert(key.clone());
                }
                failed.push((index, e));
            }
        }
    }
    Queued {
        rows,
        in_flight,
        failed,
    }
}

/// The record of an outbox row, and its send span (linked to the row's creation context).
fn record_of(row: &PendingRow) -> (FutureRecord<'_, str, [u8]>, tracing::Span) {
    let span = trace::relay_send(&row.topic, row.event_id, row.key.as_deref());
    trace::link_row(&span, &row.headers);
    let record = crate::kafka::record_of(
        &row.topic,
        row.key.as_deref(),
        &row.payload,
        crate::kafka::headers_of_row(&row.headers),
    );
    (record, span)
}

impl Relay {
    /// Awaits the acknowledgements of a batch [`produce`] queued; schedules or buries what
    /// Kafka did not acknowledge, and returns what it did (to be marked sent by the caller).
    pub(super) async fn settle(&self, queued: Queued) -> Result<Sent, sqlx::Error> {
        let Queued {
            rows,
            in_flight,
            failed,
        } = queued;
        let mut failed: Vec<(&PendingRow, KafkaError)> =
            failed.into_iter().map(|(i, e)| (&rows[i], e)).collect();
        let mut blocked: HashSet<&str> = failed
            .iter()
            .filter_map(|(row, _)| row.key.as_deref())
            .collect();
        let mut sent = Vec::with_capacity(in_flight.len());
        let mut rejected: Vec<(&PendingRow, KafkaError)> = Vec::new();
        for (index, delivery, span) in in_flight {
            let row = &rows[index];
            let error = match delivery.await {
                Ok(Ok(delivery)) => {
                    trace::acknowledged(&span, delivery.partition, delivery.offset);
                    sent.push(row.id);
                    continue;
                }
                Ok(Err((e, _))) => e,
                Err(_) => KafkaError::Canceled,
            };
            trace::failed_kafka(&span, &error);
            rejected.push((row, error));
        }
        // A broker rejects a whole record batch for one bad record (too large, say): send each
        // rejected row alone, in order, so only the culprit counts an attempt. A key whose row
        // fails here holds its later rows back, unattempted. (Outages are not isolated: every
        // row would wait out the timeout again.)
        if rejected.len() > 1 && rejected.iter().any(|(_, e)| !is_outage(e)) {
            for (row, _) in rejected {
                if row.key.as_deref().is_some_and(|key| blocked.contains(key)) {
                    continue;
                }
                match self.send_one(row).await {
                    Ok(()) => sent.push(row.id),
                    Err(error) => {
                        if let Some(key) = row.key.as_deref() {
                            blocked.insert(key);
                        }
                        failed.push((row, error));
                    }
                }
            }
        } else {
            failed.extend(rejected);
        }
        self.stats.batches.add(1);
        let failed_keys: HashSet<String> = failed
            .iter()
            .filter_map(|(row, _)| row.key.clone())
            .chain(blocked.iter().map(|k| (*k).to_owned()))
            .collect();
        let mut outage_error = None;
        for (row, error) in failed {
            // An outage (timeouts, brokers down) is not the event's fault: it is retried with
            // backoff for as long as it lasts, without using up the event's attempts.
            let outage = is_outage(&error);
            let class = ErrorClass::of_kafka(&error);
            let error = error.to_string();
            let attempt = row.attempts as u32 + u32::from(!outage);
            if !outage && attempt >= self.config.max_attempts {
                tracing::error!(event_id = %row.event_id, topic = %row.topic, attempts = attempt, %error,
                    %class, "eventbus relay: event moved to the dead table");
                let dead_letter_topic = self.dead_letter(row, &error, attempt, class).await;
                self.announce(row, &error, attempt, class, dead_letter_topic)
                    .await;
                self.store.kill(row.id, &error, class).await?;
                self.stats.dead_lettered.add(class);
            } else {
                if outage {
                    // Kafka is away: the relay says so once (`watch.rs`), not per event.
                    tracing::debug!(event_id = %row.event_id, topic = %row.topic, %error,
                        "eventbus relay: Kafka unreachable; the event waits");
                    outage_error = Some(error.clone());
                } else {
                    tracing::warn!(event_id = %row.event_id, topic = %row.topic, attempt, %error,
                        "eventbus relay: publish failed; will retry");
                }
                self.store
                    .retry_later(
                        row.id,
                        &error,
                        self.config.backoff.delay(attempt.max(1)),
                        !outage,
                    )
                    .await?;
                self.stats.retried.add(1);
            }
        }
        Ok(Sent {
            failed_keys,
            acknowledged: sent,
            outage: outage_error,
        })
    }

    /// Deletes (or, with a retention, marks) rows Kafka acknowledged, and counts them published.
    pub(super) async fn mark_sent(&self, ids: Vec<i64>) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // On the read sessions too: their settings keep the delete on the primary key's index
        // whatever the statistics say, and it does not take a connection of the service's pool.
        self.reader()
            .sent(&ids, !self.config.retention.is_zero())
            .await?;
        self.stats.published.add(ids.len() as u64);
        Ok(())
    }

    /// Sends one row and awaits its acknowledgement, in a send span of its own.
    async fn send_one(&self, row: &PendingRow) -> Result<(), KafkaError> {
        let (record, span) = record_of(row);
        match self
            .producer
            .send(record, Duration::from_secs(0))
            .instrument(span.clone())
            .await
        {
            Ok(delivery) => {
                trace::acknowledged(&span, delivery.partition, delivery.offset);
                Ok(())
            }
            Err((e, _)) => {
                trace::failed_kafka(&span, &e);
                Err(e)
            }
        }
    }

    /// Dead-letters an event moved to the dead table to the configured topic (with the headers
    /// of [`crate::dlq`], so [`crate::dlq::replay`] puts it back); a failure here is logged (the
    /// row is in the dead table either way). Returns the topic when the record went there.
    async fn dead_letter(
        &self,
        row: &PendingRow,
        error: &str,
        attempts: u32,
        class: ErrorClass,
    ) -> Option<String> {
        let topic = self.config.dead_letter_topic.as_ref()?;
        let letter = DeadLetter {
            topic: &row.topic,
            partition: None,
            offset: None,
            error,
            attempts,
            failed_in: RELAY,
            group: None,
            class,
        };
        // The row's CloudEvents headers (a JSON object of strings), then the dead-letter ones.
        let original = row.headers.pairs();
        let headers = letter.headers(original.iter().map(|(k, v)| (&**k, v.as_bytes())));
        let mut record = FutureRecord::to(topic)
            .payload(row.payload.as_slice())
            .headers(headers);
        if let Some(key) = row.key.as_deref() {
            record = record.key(key);
        }
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => Some(topic.clone()),
            Err((e, _)) => {
                tracing::error!(event_id = %row.event_id, dead_letter_topic = %topic, error = %e, "eventbus relay: cannot publish to the dead-letter topic");
                None
            }
        }
    }

    /// Announces a dead letter: the hook, then the [`DeadLettered`] event on its topic, with the
    /// relay's producer (a failure is logged: the row is in the dead table either way).
    async fn announce(
        &self,
        row: &PendingRow,
        error: &str,
        attempts: u32,
        class: ErrorClass,
        dead_letter_topic: Option<String>,
    ) {
        let header = |name: &str| row.headers.get(name);
        let notice = DeadLettered {
            class,
            failed_in: RELAY.to_owned(),
            topic: row.topic.clone(),
            dead_letter_topic,
            table: Some(self.store.table().to_owned()),
            group: None,
            service: self.service.clone(),
            partition: None,
            offset: None,
            event_type: header(crate::envelope::headers::TYPE),
            event_id: Some(row.event_id.to_string()),
            error: error.to_owned(),
            attempts,
            dead_lettered_at: DeadLettered::now(),
        };
        crate::dlq::call_hook(self.on_dead_letter.as_ref(), &notice);
        if notice.is_of_a_notification() {
            return;
        }
        let Some(envelope) = notice.envelope() else {
            return;
        };
        let record = crate::kafka::record(&envelope, crate::kafka::headers(&envelope));
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(5)).await {
            tracing::error!(event_id = %row.event_id, topic = %envelope.topic, error = %e,
                "eventbus relay: cannot publish the dead-letter notification");
        }
    }
}

/// True for failures of the path to Kafka rather than of the record.
fn is_outage(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(error, KafkaError::Canceled)
        || matches!(
            error.rdkafka_error_code(),
            Some(
                C::MessageTimedOut
                    | C::AllBrokersDown
                    | C::BrokerTransportFailure
                    | C::QueueFull
                    | C::RequestTimedOut
                    | C::NetworkException
                    | C::NotLeaderForPartition
                    | C::LeaderNotAvailable
                    | C::NotEnoughReplicas
                    | C::NotEnoughReplicasAfterAppend
                    | C::UnknownTopicOrPartition
            )
        )
}
