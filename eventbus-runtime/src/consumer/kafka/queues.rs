//! Key queues: the records of one key wait in order for their key's worker, which handles them
//! one at a time (retries included) and dead-letters what exhausts its attempts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::{Job, KafkaRun, QueueId};
use crate::consumer::engine::{FirstAttempt, Outcome};
use crate::dlq::{DeadLetter, DeadLettered, ErrorClass};
use crate::envelope::Envelope;
use crate::{lock, trace};

impl KafkaRun {
    /// Works through one queue until it is empty: a key's records one at a time, or, for a
    /// consumer with an inbox, a partition's records in batches (one transaction each).
    pub(super) async fn work(self: Arc<Self>, queue_id: QueueId, stop: watch::Receiver<bool>) {
        let batch = self.batch;
        loop {
            let mut jobs = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(&queue_id).filter(|q| !q.jobs.is_empty()) else {
                    // Empty under the lock: the next record of this queue starts a new worker.
                    queues.remove(&queue_id);
                    self.queued.fetch_sub(1, Ordering::Release);
                    return;
                };
                let n = queue.jobs.len().min(batch);
                queue.jobs.drain(..n).collect::<VecDeque<_>>()
            };
            if jobs.len() == 1 {
                let (job, first) = jobs.pop_front().expect("one job");
                self.one(job, first, &stop).await;
            } else {
                self.batch(jobs, &stop).await;
            }
        }
    }

    /// One record: handled with its retries, dead-lettered when they run out.
    async fn one(&self, job: Job, first: Option<FirstAttempt>, stop: &watch::Receiver<bool>) {
        let outcome = match &job.record {
            Ok(envelope) => {
                self.engine
                    .process(envelope, stop, first)
                    .instrument(job.span.clone())
                    .await
            }
            Err(bad) => Outcome::Dead {
                error: bad.error.clone(),
                handler: "decoder".into(),
                attempts: 1,
                class: ErrorClass::Decode,
            },
        };
        if let Outcome::Dead {
            error,
            handler,
            attempts,
            class,
        } = outcome
        {
            trace::dead_lettered(&job.span, attempts, class.as_str());
            Box::pin(self.dead_letter(&job, &error, &handler, attempts, class))
                .instrument(job.span.clone())
                .await;
        }
        self.done(&job);
    }

    /// A batch of one partition's records, in order, through the inbox (see
    /// [`crate::inbox::Inbox`]): the longest run of records that commits together is committed,
    /// the record that stopped it goes alone ([`Self::one`]: retries, dead letter), and the rest
    /// form the next batch.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    async fn batch(
        &self,
        mut jobs: VecDeque<(Job, Option<FirstAttempt>)>,
        stop: &watch::Receiver<bool>,
    ) {
        while !jobs.is_empty() {
            // Records that cannot be decoded end a batch: they go alone, to the dead letters.
            let mut end = jobs.iter().take_while(|(j, _)| j.record.is_ok()).count();
            while end > 1 {
                let envelopes: Vec<&Envelope> = jobs
                    .iter()
                    .take(end)
                    .filter_map(|(j, _)| j.record.as_ref().ok())
                    .collect();
                match self.engine.attempt_batch(&envelopes).await {
                    Ok(()) => break,
                    Err((at, handler, error)) => {
                        tracing::debug!(%handler, %error, at, records = end,
                            "eventbus consumer: a batch failed; its records before the failure are committed without it");
                        end = at;
                    }
                }
            }
            if end > 1 {
                for (job, _) in jobs.drain(..end) {
                    self.done(&job);
                }
            }
            if let Some((job, first)) = jobs.pop_front() {
                self.one(job, first, stop).await;
            }
        }
    }

    #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
    async fn batch(
        &self,
        jobs: VecDeque<(Job, Option<FirstAttempt>)>,
        stop: &watch::Receiver<bool>,
    ) {
        for (job, first) in jobs {
            self.one(job, first, stop).await;
        }
    }

    /// A record is done: its offset may be committed (stored in bulk by the run loop), and its
    /// permit is free.
    fn done(&self, job: &Job) {
        self.offsets.finish(job.topic, job.partition, job.offset);
        self.permits.add_permits(1);
    }

    /// Publishes a record that exhausted its attempts to the dead-letter topic, with where it came
    /// from and why (the headers of [`crate::dlq`]); retries that publish until it succeeds (the
    /// offset waits for it). Then announces it, once.
    async fn dead_letter(
        &self,
        job: &Job,
        error: &str,
        handler: &str,
        attempts: u32,
        class: ErrorClass,
    ) {
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
            class,
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
                    self.engine.stats.dead_lettered.add(class);
                    tracing::error!(topic = %job.topic, partition = job.partition, offset = job.offset, %handler, %error, %class, dead_letter_topic = %topic,
                        "eventbus consumer: record dead-lettered");
                    break;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, dead_letter_topic = %topic, "eventbus consumer: cannot publish to the dead-letter topic; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        let header = |name: &str| {
            original
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let notice = DeadLettered {
            class,
            failed_in: handler.to_owned(),
            topic: job.topic.to_owned(),
            dead_letter_topic: Some(topic),
            table: None,
            group: Some(self.engine.group.clone()),
            service: Some(self.engine.service.to_owned()),
            partition: Some(job.partition),
            offset: Some(job.offset),
            event_type: header(crate::envelope::headers::TYPE),
            event_id: header(crate::envelope::headers::ID),
            error: error.to_owned(),
            attempts,
            dead_lettered_at: DeadLettered::now(),
        };
        let Some(envelope) = self.engine.announce(&notice) else {
            return;
        };
        // A few tries (the offset waits), then logged: a notification topic the consumer may not
        // write to must not stop its partition.
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=NOTIFY_ATTEMPTS {
            let record = crate::kafka::record(&envelope, crate::kafka::headers(&envelope));
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => return,
                Err((e, _)) if attempt == NOTIFY_ATTEMPTS => {
                    tracing::error!(error = %e, topic = %envelope.topic, "eventbus consumer: cannot publish the dead-letter notification");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

/// Tries to publish a dead-letter notification.
const NOTIFY_ATTEMPTS: u32 = 5;
