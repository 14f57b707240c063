//! What a handler is: a typed async function or closure ([`Handler`]), one that writes in the
//! inbox transaction ([`TxHandler`]), a synchronous function ([`sync_handler`]), and the
//! object-safe [`Plugin`] for events known only at run time.

use std::future::Future;
use std::sync::Arc;

use crate::BoxFuture;
use crate::envelope::Envelope;
use crate::error::HandlerError;
use crate::event::Event;
use crate::filter::EventFilter;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::inbox::InboxTx;

/// What a handler may return: `()`, or `Result<(), E>` with an error convertible into a
/// [`HandlerError`].
pub trait IntoHandlerResult {
    /// The result as the consumer sees it.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<Err: Into<HandlerError>> IntoHandlerResult for Result<(), Err> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// An event handler: an async function or closure taking the event, or a plain function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle `{E}` events",
    label = "not a handler of `{E}`",
    note = "a handler is an async fn or closure taking the event by value, `|event: {E}| async move {{ .. }}`, returning `()` or `Result<(), impl Into<eventbus::HandlerError>>`; a synchronous function goes through `eventbus::sync_handler(f)`"
)]
pub trait Handler<E>: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static;
}

impl<E, F, Fut> Handler<E> for F
where
    E: Event,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult,
{
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let fut = self(event);
        async move { fut.await.into_handler_result() }
    }
}

/// A synchronous handler, run on tokio's blocking pool.
pub struct SyncHandler<F>(Arc<F>);

/// Wraps a synchronous function as a [`Handler`]: `.on::<E, _>(sync_handler(|e: E| { .. }))`.
pub fn sync_handler<F>(f: F) -> SyncHandler<F> {
    SyncHandler(Arc::new(f))
}

impl<E, F, R> Handler<E> for SyncHandler<F>
where
    E: Event,
    F: Fn(E) -> R + Send + Sync + 'static,
    R: IntoHandlerResult + Send + 'static,
{
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let f = Arc::clone(&self.0);
        async move {
            tokio::task::spawn_blocking(move || f(event).into_handler_result())
                .await
                .map_err(|e| HandlerError::from(format!("the handler panicked: {e}")))?
        }
    }
}

/// A handler that writes its effects in the inbox transaction and hands it back:
/// `|event: E, mut tx: InboxTx| async move { ..; Ok(tx) }`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub trait TxHandler<E>: Send + Sync + 'static {
    /// Handles one event inside `tx`.
    fn handle(
        &self,
        event: E,
        tx: InboxTx,
    ) -> impl Future<Output = Result<InboxTx, HandlerError>> + Send + 'static;
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl<E, F, Fut, Err> TxHandler<E> for F
where
    E: Event,
    F: Fn(E, InboxTx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<InboxTx, Err>> + Send + 'static,
    Err: Into<HandlerError>,
{
    fn handle(
        &self,
        event: E,
        tx: InboxTx,
    ) -> impl Future<Output = Result<InboxTx, HandlerError>> + Send + 'static {
        let fut = self(event, tx);
        async move { fut.await.map_err(Into::into) }
    }
}

/// A plugin: an object-safe handler for events known only at run time (the seed's plugins),
/// added with `Consumer::plugin(Arc<dyn Plugin>)`. It sees every envelope of the consumer's topics
/// that its filter lets through.
pub trait Plugin: Send + Sync + 'static {
    /// A name for logs and dead letters.
    fn name(&self) -> &str;
    /// Which events it wants.
    fn filter(&self) -> EventFilter {
        EventFilter::new()
    }
    /// Handles one event.
    fn handle<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>>;
}
