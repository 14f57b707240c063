//! The engine: one record through its handlers. Decoding, the inbox transaction, retries with
//! backoff, the circuit breaker, panics and attempt timeouts; shared by the Kafka run loop and
//! the Testing mode's in-memory transport.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument as _;

use super::breaker::Breaker;
use super::handle::ConsumerStats;
use super::handler::Plugin;
use super::retry::RetryPolicy;
use crate::BoxFuture;
use crate::bus::testing::{Failed, HandlerFailure, Subscriber};
use crate::dlq::{DeadLetterHook, DeadLettered, ErrorClass};
use crate::envelope::{Attributes, Envelope};
use crate::error::{DecodeError, HandlerError};
use crate::event::Category;
use crate::filter::EventFilter;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::inbox::Inbox;

/// The inbox transaction a handler may write in.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) type Tx = crate::inbox::InboxTx;
/// Without a database feature there is no inbox, so no transaction.
#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
pub(crate) type Tx = std::convert::Infallible;

/// A handler at work on one record; it hands the inbox transaction back.
pub(crate) type HandlerFuture = BoxFuture<'static, Result<Option<Tx>, HandlerError>>;

/// A typed handler with its event type erased: decodes the payload (or says why it cannot) and
/// starts the handler.
pub(crate) type ErasedTyped =
    Arc<dyn Fn(&[u8], Option<Tx>) -> Result<HandlerFuture, serde_json::Error> + Send + Sync>;

/// Starts a route's handler on `payload`. A handler that panics while starting fails the
/// attempt instead of the consumer.
pub(crate) fn start_route(
    route: &Route,
    payload: &[u8],
    tx: Option<Tx>,
) -> Result<Result<HandlerFuture, serde_json::Error>, HandlerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (route.call)(payload, tx)))
        .map_err(panicked)
}

/// Polls a handler's future; a panic inside it becomes the attempt's error, so the record is
/// retried and dead-lettered like any failure while the consumer keeps going.
pub(crate) fn poll_guarded<T>(
    handling: &mut BoxFuture<'_, Result<T, HandlerError>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, HandlerError>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handling.as_mut().poll(cx)))
        .unwrap_or_else(|panic| Poll::Ready(Err(panicked(panic))))
}

/// Awaits a handler's future with [`poll_guarded`].
async fn guarded<T>(
    mut handling: BoxFuture<'_, Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    std::future::poll_fn(|cx| poll_guarded(&mut handling, cx)).await
}

/// The error of a handler that panicked, with the panic's message.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> HandlerError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    Box::new(Panicked(message))
}

/// A handler panicked (the attempt's error; its class is [`ErrorClass::Panic`]).
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the handler panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

/// A handler overran the retry policy's attempt timeout ([`ErrorClass::Timeout`]).
#[derive(Debug)]
struct TimedOut(Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the handler did not finish within {:?} (the retry policy's attempt timeout)",
            self.0
        )
    }
}

impl std::error::Error for TimedOut {}

/// The class of an attempt's error: a panic, a timeout, a payload that does not decode, the
/// inbox's database, or else the handler's own error.
pub(crate) fn class_of(error: &HandlerError) -> ErrorClass {
    if error.is::<Panicked>() {
        ErrorClass::Panic
    } else if error.is::<TimedOut>() {
        ErrorClass::Timeout
    } else if error.is::<DecodeError>() {
        ErrorClass::Decode
    } else if is_database(error) {
        ErrorClass::Transient
    } else {
        ErrorClass::Handler
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn is_database(error: &HandlerError) -> bool {
    error.is::<sqlx::Error>()
}

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
fn is_database(_: &HandlerError) -> bool {
    false
}

/// One handler, its event type erased.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) topic: &'static str,
    pub(crate) event_type: &'static str,
    /// The schema version of the handler's event type: a record's type and version select it.
    pub(crate) version: u32,
    /// The category the event type declares: a record that carries none is of this one.
    pub(crate) category: Category,
    /// The handler's name (its Rust type), for logs and dead letters.
    pub(crate) name: &'static str,
    /// The Rust type of the handler's event, and its name for messages.
    pub(crate) event: (std::any::TypeId, &'static str),
    pub(crate) call: ErasedTyped,
}

/// What a consumer does with a record, decided once from its checked attributes, before any
/// handler runs, whatever way the record goes (the Kafka loop's fast path or its key queues, or
/// the Testing transport).
pub(crate) enum Verdict<'e> {
    /// No handler here wants it (another type, or the filter keeps it out): skipped.
    Skip,
    /// It cannot be handled: dead-lettered with this error, no handler run.
    Reject(DecodeError),
    /// To be handled, as an event of this category and version (the record's own, or, where it
    /// carries none, those of the handler of its type).
    Handle {
        category: Category,
        version: u32,
        /// The typed handler, when it is the only one.
        only: Option<&'e Route>,
    },
}

/// Everything that handles a record, shared by the Kafka loop and the Testing bus.
pub(crate) struct Engine {
    pub(crate) group: String,
    pub(crate) routes: Vec<Route>,
    pub(crate) plugins: Vec<Arc<dyn Plugin>>,
    pub(crate) filter: EventFilter,
    pub(crate) retry: RetryPolicy,
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) inbox: Option<Inbox>,
    pub(crate) breaker: Breaker,
    pub(crate) stats: Arc<ConsumerStats>,
    /// The service of the consumer's bus, named in its dead-letter notifications.
    pub(crate) service: &'static str,
    /// Called once per dead letter.
    pub(crate) on_dead_letter: Option<DeadLetterHook>,
    /// No plugins, no inbox, a filter on headers only: a record can be handled from its raw
    /// headers and payload, without an envelope.
    pub(crate) fast: bool,
}

/// A first attempt the consumer's fast path made before the record reached its key's queue.
pub(crate) enum FirstAttempt {
    /// The handler failed at once.
    Failed {
        handler: &'static str,
        error: HandlerError,
    },
    /// The handler is waiting (I/O, a timer): the record continues on a worker.
    Running {
        handler: &'static str,
        handling: HandlerFuture,
    },
}

/// The outcome of a record.
pub(crate) enum Outcome {
    Done,
    Dead {
        error: String,
        handler: String,
        attempts: u32,
        class: ErrorClass,
    },
}

impl Engine {
    pub(crate) fn topics(&self) -> Vec<&'static str> {
        let mut t: Vec<&'static str> = self.routes.iter().map(|r| r.topic).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// The verdict on a record of `topic` with these attributes (see [`Verdict`]).
    ///
    /// A record without `ce_schemaversion` is of the lowest version handled here for its type,
    /// one without `ce_category` of its handler's category (integration when no typed handler
    /// takes its type). A record of a type handled here but in a version no handler reads, or
    /// whose payload is not JSON, is rejected; one of a type handled by nobody is skipped.
    pub(crate) fn judge(&self, topic: &str, a: &Attributes<'_>) -> Verdict<'_> {
        let typed = || {
            self.routes
                .iter()
                .filter(move |r| r.topic == topic && r.event_type == a.event_type)
        };
        let version = a
            .version
            .or_else(|| typed().map(|r| r.version).min())
            .unwrap_or(1);
        let category = a
            .category
            .or_else(|| typed().next().map(|r| r.category))
            .unwrap_or(Category::Integration);
        if !self.filter.matches_attributes(a, category) {
            return Verdict::Skip;
        }
        let mut routes = typed().filter(|r| r.version == version);
        let Some(first) = routes.next() else {
            if typed().next().is_some() {
                let mut handled: Vec<u32> = typed().map(|r| r.version).collect();
                handled.sort_unstable();
                handled.dedup();
                return Verdict::Reject(DecodeError::UnhandledVersion {
                    event_type: a.event_type.to_owned(),
                    version,
                    handled,
                });
            }
            if self.plugins.is_empty() {
                return Verdict::Skip;
            }
            return Verdict::Handle {
                category,
                version,
                only: None,
            };
        };
        if !a.is_json() {
            return Verdict::Reject(DecodeError::ContentType {
                content_type: a.content_type.unwrap_or_default().to_owned(),
            });
        }
        let only = routes.next().is_none().then_some(first);
        Verdict::Handle {
            category,
            version,
            only,
        }
    }

    /// The typed handlers of `envelope` (it passed the filter): those of its topic, type and
    /// version.
    fn routes_for<'a>(&'a self, envelope: &'a Envelope) -> impl Iterator<Item = &'a Route> {
        self.routes.iter().filter(|r| {
            r.topic == envelope.topic
                && r.event_type == envelope.event_type
                && r.version == envelope.version
        })
    }

    /// True when some handler of this engine wants `envelope`.
    pub(crate) fn wants(&self, envelope: &Envelope) -> bool {
        self.filter.matches(envelope)
            && (self.routes_for(envelope).next().is_some()
                || self.plugins.iter().any(|p| p.filter().matches(envelope)))
    }

    /// One attempt: every wanted handler, inside the inbox transaction when there is one.
    async fn attempt(&self, envelope: &Envelope) -> Result<(), (String, HandlerError)> {
        let Some(tx) = self.begin(envelope).await? else {
            return Ok(());
        };
        let tx = self.run_handlers(envelope, tx).await?;
        if let Some(tx) = tx {
            commit(tx).await?;
        }
        Ok(())
    }

    /// Records per inbox transaction on the Kafka loop: 1 without an inbox.
    pub(crate) fn batch_size(&self) -> usize {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(inbox) = &self.inbox {
            return inbox.batch_size();
        }
        1
    }

    /// One attempt at a batch of one partition's records, in one inbox transaction: the ids
    /// claimed in one statement, every wanted handler of each fresh record in order, one commit.
    /// On a failure nothing is committed, and the error says at which record (the commit's own
    /// failure, and the claim's, are put on the first).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) async fn attempt_batch(
        &self,
        envelopes: &[&Envelope],
    ) -> Result<(), (usize, String, HandlerError)> {
        let Some(inbox) = &self.inbox else {
            unreachable!("batches are made only for consumers with an inbox")
        };
        let wanted: Vec<bool> = envelopes.iter().map(|e| self.wants(e)).collect();
        let ids: Vec<uuid::Uuid> = envelopes
            .iter()
            .zip(&wanted)
            .filter(|(_, w)| **w)
            .map(|(e, _)| e.id)
            .collect();
        let (tx, fresh) = Box::pin(inbox.begin_batch(&self.group, &ids))
            .await
            .map_err(|e| (0, "inbox".to_owned(), HandlerError::from(e)))?;
        let mut tx = Some(tx);
        let mut fresh = fresh.into_iter();
        let (mut handled, mut duplicates) = (0, 0);
        for (i, envelope) in envelopes.iter().enumerate() {
            if !wanted[i] {
                continue;
            }
            if !fresh.next().unwrap_or(false) {
                duplicates += 1;
                continue;
            }
            tx = self
                .run_handlers(envelope, tx)
                .await
                .map_err(|(handler, error)| (i, handler, error))?;
            handled += 1;
        }
        if let Some(tx) = tx {
            commit(tx).await.map_err(|(h, e)| (0, h, e))?;
        }
        let skipped = wanted.iter().filter(|w| !**w).count();
        self.stats.skipped.add(skipped as u64);
        self.stats.duplicates.add(duplicates);
        self.stats.handled.add(handled);
        if handled > 0 {
            self.breaker.record(true);
        }
        Ok(())
    }

    /// Every wanted handler of `envelope`, the inbox transaction (if any) passed through them.
    async fn run_handlers(
        &self,
        envelope: &Envelope,
        mut tx: Option<Tx>,
    ) -> Result<Option<Tx>, (String, HandlerError)> {
        for route in self.routes_for(envelope) {
            let failed = |e| (route.name.to_owned(), e);
            let handling = start_route(route, &envelope.payload, tx)
                .map_err(failed)?
                .map_err(|source| {
                    failed(HandlerError::from(DecodeError::Payload {
                        event_type: envelope.event_type.to_string(),
                        id: envelope.id,
                        source,
                    }))
                })?;
            tx = self.finish(handling).await.map_err(failed)?;
        }
        for plugin in self.plugins.iter().filter(|p| p.filter().matches(envelope)) {
            let failed = |e| (plugin.name().to_owned(), e);
            let handling =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.handle(envelope)))
                    .map_err(|panic| failed(panicked(panic)))?;
            self.finish(handling).await.map_err(failed)?;
        }
        Ok(tx)
    }

    /// Handles one record with retries; returns whether it must go to the dead-letter topic.
    /// `first` is the outcome of a first attempt made already (on the consumer's fast path).
    pub(crate) async fn process(
        &self,
        envelope: &Envelope,
        stop: &watch::Receiver<bool>,
        first: Option<FirstAttempt>,
    ) -> Outcome {
        let (mut attempt, mut failed) = match first {
            None if !self.wants(envelope) => {
                self.stats.skipped.add(1);
                return Outcome::Done;
            }
            None => (0, None),
            Some(FirstAttempt::Failed { handler, error }) => (1, Some((handler.to_owned(), error))),
            Some(FirstAttempt::Running { handler, handling }) => {
                match self.finish(handling).await {
                    Ok(_) => {
                        self.succeeded();
                        tracing::Span::current().record("eventbus.attempts", 1);
                        return Outcome::Done;
                    }
                    Err(error) => {
                        self.breaker.record(false);
                        (1, Some((handler.to_owned(), error)))
                    }
                }
            }
        };
        loop {
            if let Some((handler, error)) = failed.take() {
                let Some(delay) = self.retry.after_failure(attempt) else {
                    return Outcome::Dead {
                        class: class_of(&error),
                        error: error.to_string(),
                        handler,
                        attempts: attempt,
                    };
                };
                self.stats.retried.add(1);
                tracing::warn!(event_id = %envelope.id, %handler, attempt, %error, "eventbus consumer: handler failed; retrying");
                let mut stop = stop.clone();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
            }
            while let Some(wait) = self.breaker.open_for() {
                tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            }
            attempt += 1;
            match self
                .attempt(envelope)
                .instrument(crate::trace::attempt(attempt))
                .await
            {
                Ok(()) => {
                    self.succeeded();
                    tracing::Span::current().record("eventbus.attempts", attempt);
                    return Outcome::Done;
                }
                Err(e) => {
                    self.breaker.record(false);
                    failed = Some(e);
                }
            }
        }
    }

    pub(crate) fn succeeded(&self) {
        self.breaker.record(true);
        self.stats.handled.add(1);
    }

    /// Awaits a handler: panics become errors, and an attempt past the policy's timeout fails.
    async fn finish<T>(
        &self,
        handling: BoxFuture<'_, Result<T, HandlerError>>,
    ) -> Result<T, HandlerError> {
        match self.retry.attempt_limit() {
            None => guarded(handling).await,
            Some(limit) => tokio::time::timeout(limit, guarded(handling))
                .await
                .unwrap_or_else(|_| Err(Box::new(TimedOut(limit)))),
        }
    }

    /// The inbox transaction of `envelope`: `Ok(None)` when the inbox has seen it (a duplicate,
    /// counted), `Ok(Some(None))` without an inbox.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    async fn begin(
        &self,
        envelope: &Envelope,
    ) -> Result<Option<Option<Tx>>, (String, HandlerError)> {
        let Some(inbox) = &self.inbox else {
            return Ok(Some(None));
        };
        // Boxed: the database futures are large, and this one runs only with an inbox; inline,
        // they would make every record's future (and its moves) that large.
        match Box::pin(inbox.begin(&self.group, envelope.id)).await {
            Ok(Some(tx)) => Ok(Some(Some(tx))),
            Ok(None) => {
                self.stats.duplicates.add(1);
                Ok(None)
            }
            Err(e) => Err(("inbox".into(), e.into())),
        }
    }

    #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
    async fn begin(&self, _: &Envelope) -> Result<Option<Option<Tx>>, (String, HandlerError)> {
        Ok(Some(None))
    }
}

/// Commits the inbox transaction: the handlers' effects and the inbox row together.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
async fn commit(tx: Tx) -> Result<(), (String, HandlerError)> {
    Box::pin(tx.commit())
        .await
        .map_err(|e| ("inbox commit".to_owned(), HandlerError::from(e)))
}

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
async fn commit(tx: Tx) -> Result<(), (String, HandlerError)> {
    match tx {}
}

impl Engine {
    /// The notification of a dead letter, after calling the hook with it; `None` to publish
    /// nothing (the dead letter of a notification: see [`crate::dlq`]).
    pub(crate) fn announce(&self, notice: &DeadLettered) -> Option<Envelope> {
        crate::dlq::call_hook(self.on_dead_letter.as_ref(), notice);
        if notice.is_of_a_notification() {
            return None;
        }
        notice.envelope()
    }

    /// The Testing mode's dead letter: a failed attempt, recorded and announced.
    fn failed(
        &self,
        envelope: &Envelope,
        handler: String,
        error: String,
        class: ErrorClass,
    ) -> Failed {
        let notice = DeadLettered {
            class,
            failed_in: handler.clone(),
            topic: envelope.topic.to_string(),
            dead_letter_topic: None,
            table: None,
            group: Some(self.group.clone()),
            service: Some(self.service.to_owned()),
            partition: None,
            offset: None,
            event_type: Some(envelope.event_type.to_string()),
            event_id: Some(envelope.id.to_string()),
            error: error.clone(),
            attempts: 1,
            dead_lettered_at: DeadLettered::now(),
        };
        Failed {
            failure: HandlerFailure {
                event_id: envelope.id,
                event_type: envelope.event_type.to_string(),
                handler,
                error,
                class,
            },
            notice: self.announce(&notice),
        }
    }
}

/// The Testing mode: one attempt per event; a failure is recorded and announced, as a dead letter
/// would be.
impl Subscriber for Engine {
    fn deliver<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Option<Failed>> {
        let span = crate::trace::process(crate::trace::Delivered {
            topic: &envelope.topic,
            group: &self.group,
            partition: None,
            id: Some(envelope.id),
            key: envelope.key.as_deref(),
            trace: (
                envelope.traceparent.as_deref(),
                envelope.tracestate.as_deref(),
            ),
        });
        let delivery = async move {
            match self.judge(&envelope.topic, &envelope.attributes()) {
                Verdict::Skip => return None,
                Verdict::Reject(error) => {
                    return Some(self.failed(
                        envelope,
                        "decoder".to_owned(),
                        error.to_string(),
                        ErrorClass::Decode,
                    ));
                }
                Verdict::Handle { .. } => {}
            }
            if !self.wants(envelope) {
                return None;
            }
            match self.attempt(envelope).await {
                Ok(()) => {
                    self.stats.handled.add(1);
                    None
                }
                Err((handler, error)) => {
                    let class = class_of(&error);
                    Some(self.failed(envelope, handler, error.to_string(), class))
                }
            }
        };
        Box::pin(delivery.instrument(span))
    }
}
