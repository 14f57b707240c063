//! The fast path: a record of a key with nothing queued, for an engine that needs no envelope,
//! is routed on its raw `ce_type` header, decoded straight from the record and handled in the
//! poll loop, with no envelope, queue entry or task.

use std::sync::atomic::Ordering;
use std::task::Poll;

use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::{Inline, KafkaRun, QueueId};
use crate::consumer::engine::{FirstAttempt, poll_guarded, start_route};
use crate::envelope::RawAttributes;
use crate::lock;

impl KafkaRun {
    /// The fast path: a record of a key with nothing queued, for an engine that needs no
    /// envelope, is routed on its raw `ce_type` header, decoded straight from the record and
    /// handled here. Anything else (or a handler that fails or waits) goes to the key's queue.
    pub(super) fn inline(
        &self,
        message: &BorrowedMessage<'_>,
        topic: &'static str,
        queue: QueueId,
    ) -> Inline {
        let engine = &*self.engine;
        let slow = Inline::Queue(None);
        if !engine.fast || engine.breaker.open_for().is_some() {
            return slow;
        }
        if self.queued.load(Ordering::Acquire) > 0 && lock(&self.queues).contains_key(&queue) {
            return slow;
        }
        if message
            .key()
            .is_some_and(|k| std::str::from_utf8(k).is_err())
        {
            return slow;
        }
        let Some(headers) = message.headers() else {
            return slow;
        };
        // One pass over the headers; without a filter, it stops once the required ones are in.
        let mut attrs = RawAttributes::default();
        let whole = !engine.filter.is_empty();
        for header in headers.iter() {
            if attrs.set(header.key, header.value.unwrap_or_default()) && !whole {
                break;
            }
        }
        // A record the envelope decoder would reject goes the slow way, to be named in the
        // dead-letter topic.
        let Some(event_type) = attrs.event_type.filter(|_| attrs.complete()) else {
            return slow;
        };
        let get = |name: &str| attrs.get(name);
        let mut routes = engine
            .routes
            .iter()
            .filter(|r| r.topic == topic && r.event_type.as_bytes() == event_type);
        let route = match routes.next() {
            Some(route) if engine.filter.matches_headers(get) => route,
            // Nobody handles it, or the filter keeps it out: skipped, never decoded.
            _ => {
                engine.stats.skipped.add(1);
                return Inline::Done;
            }
        };
        if routes.next().is_some() {
            return slow;
        }
        let mut handling = match start_route(route, message.payload().unwrap_or_default(), None) {
            Ok(Ok(handling)) => handling,
            // A payload that does not decode fails on the slow path, where the error names the
            // event.
            Ok(Err(_)) => return slow,
            Err(error) => {
                engine.breaker.record(false);
                return Inline::Queue(Some(FirstAttempt::Failed {
                    handler: route.name,
                    error,
                }));
            }
        };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match poll_guarded(&mut handling, &mut cx) {
            Poll::Ready(Ok(_)) => {
                engine.succeeded();
                Inline::Done
            }
            Poll::Ready(Err(error)) => {
                engine.breaker.record(false);
                Inline::Queue(Some(FirstAttempt::Failed {
                    handler: route.name,
                    error,
                }))
            }
            Poll::Pending => Inline::Queue(Some(FirstAttempt::Running {
                handler: route.name,
                handling,
            })),
        }
    }
}
