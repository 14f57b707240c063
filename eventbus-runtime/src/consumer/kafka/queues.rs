//! Key queues: the records of one key wait in order for their key's worker, which handles them
//! one at a time (retries included) and dead-letters what exhausts its attempts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::{Job, KafkaRun, QueueId};
use crate::consumer::engine::Outcome;
use crate::dlq::DeadLetter;
use crate::{lock, trace};

impl KafkaRun {
    /// Works through one key's queue until it is empty.
    pub(super) async fn work(self: Arc<Self>, queue_id: QueueId, stop: watch::Receiver<bool>) {
        loop {
            let (job, first) = {
                let mut queues = lock(&self.queues);
                match queues.get_mut(&queue_id).and_then(|q| q.jobs.pop_front()) {
                    Some(job) => job,
                    None => {
                        // Empty under the lock: the next record of this key starts a new worker.
                        queues.remove(&queue_id);
                        self.queued.fetch_sub(1, Ordering::Release);
                        return;
                    }
                }
            };
            let outcome = match &job.record {
                Ok(envelope) => {
                    self.engine
                        .process(envelope, &stop, first)
                        .instrument(job.span.clone())
                        .await
                }
                Err(bad) => Outcome::Dead {
                    error: bad.error.clone(),
                    handler: "decoder".into(),
                    attempts: 1,
                },
            };
            if let Outcome::Dead {
                error,
                handler,
                attempts,
            } = outcome
            {
                let error_type = match job.record {
                    Ok(_) => "handler_failed",
                    Err(_) => "invalid_record",
                };
                trace::dead_lettered(&job.span, attempts, error_type);
                Box::pin(self.dead_letter(&job, &error, &handler, attempts))
                    .instrument(job.span.clone())
                    .await;
            }
            // Stored in bulk by the run loop.
            self.offsets.finish(job.topic, job.partition, job.offset);
            self.permits.add_permits(1);
        }
    }

    /// Publishes a record that exhausted its attempts to the dead-letter topic, with where it came
    /// from and why (the headers of [`crate::dlq`]); retries that publish until it succeeds (the
    /// offset waits for it).
    async fn dead_letter(&self, job: &Job, error: &str, handler: &str, attempts: u32) {
        let topic = self
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", job.topic));
        let letter = DeadLetter {
            topic: job.topic,
            partition: Some(job.partition),
            offset: Some(job.offset),
            error,
            attempts,
            failed_in: handler,
            group: Some(self.engine.group.as_str()),
        };
        let (original, key, payload): (super::RawHeaders, Option<&[u8]>, &[u8]) = match &job.record
        {
            Ok(e) => (
                e.headers()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                    .collect(),
                e.key.as_deref().map(str::as_bytes),
                e.payload.as_slice(),
            ),
            Err(bad) => (
                bad.headers.clone(),
                bad.key.as_deref(),
                bad.payload.as_slice(),
            ),
        };
        let mut delay = Duration::from_millis(100);
        loop {
            let headers = letter.headers(original.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            let mut record = FutureRecord::to(&topic).payload(payload).headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    self.engine.stats.dead_lettered.add(1);
                    tracing::error!(topic = %job.topic, partition = job.partition, offset = job.offset, %handler, %error, dead_letter_topic = %topic,
                        "eventbus consumer: record dead-lettered");
                    return;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, dead_letter_topic = %topic, "eventbus consumer: cannot publish to the dead-letter topic; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
