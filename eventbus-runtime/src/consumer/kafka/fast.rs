//! The fast path: a record the verdict gave to exactly one typed handler, of a key with nothing
//! queued, for an engine that needs no envelope (no plugins, no inbox, a filter on attributes
//! only), is decoded straight from the record and handled in the run loop, with no envelope,
//! queue entry or task.

use std::sync::atomic::Ordering;
use std::task::Poll;

use super::{Inline, KafkaRun, QueueId};
use crate::consumer::engine::{FirstAttempt, Route, poll_guarded, start_route};
use crate::lock;

impl KafkaRun {
    /// Handles the record here when it can (see the module's comment); anything else, or a
    /// handler that fails or waits, goes to the key's queue with the attempt made so far.
    pub(super) fn inline(&self, route: Option<&Route>, payload: &[u8], queue: QueueId) -> Inline {
        let engine = &*self.engine;
        let slow = Inline::Queue(None);
        let Some(route) = route else {
            return slow;
        };
        if !engine.fast || engine.breaker.open_for().is_some() {
            return slow;
        }
        if self.queued.load(Ordering::Acquire) > 0 && lock(&self.queues).contains_key(&queue) {
            return slow;
        }
        let mut handling = match start_route(route, payload, None) {
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
