//! Typed consumers (the consuming half of AD-005 and AD-006): subscriptions on topic types,
//! handlers per event type, filters, plugins, retries with backoff, dead letters, an inbox, a
//! circuit breaker.
//!
//! Delivery is at least once: a record's offset is stored for commit only once every handler
//! succeeded (or the record went to the dead-letter topic), and only up to the lowest record still
//! in work, so a crash or a rebalance re-delivers, never skips. Records of one key (in one
//! partition) are handled in order, one at a time; different keys run in parallel up to a bound. A
//! failing key is parked (backoff) while the partition's other keys flow.
//!
//! | file | holds |
//! |---|---|
//! | `handler.rs` | what a handler is: [`Handler`], [`TxHandler`], [`Plugin`], [`sync_handler`] |
//! | `builder.rs` | [`Consumer`]: `bus.consumer("group").subscribe::<T>().on::<E, _>(h).start()` |
//! | `handle.rs` | [`ConsumerHandle`], [`ConsumerHealth`], [`ConsumerStats`] |
//! | `retry.rs`, `breaker.rs` | the policies: [`RetryPolicy`], the circuit breaker |
//! | `engine.rs` | one record through its handlers: attempts, retries, the inbox, panics |
//! | `kafka/` | the poll thread and the run loop, the fast path, key queues, offsets, rebalance hooks (feature `kafka`) |
//!
//! The Testing mode delivers through the bus's in-memory transport instead of `kafka/`: the same
//! engine, one attempt per event, failures recorded.

mod breaker;
mod builder;
mod engine;
mod handle;
mod handler;
#[cfg(feature = "kafka")]
mod kafka;
mod retry;

pub use builder::Consumer;
pub use handle::{ConsumerHandle, ConsumerHealth, ConsumerStats};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use handler::TxHandler;
pub use handler::{Handler, IntoHandlerResult, Plugin, SyncHandler, sync_handler};
pub use retry::RetryPolicy;
