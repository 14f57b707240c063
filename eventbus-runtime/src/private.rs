//! What generated code reaches the runtime through (`eventbus::__private`). Not a public API.

pub use crate::event::routing::MAX_TOPIC_LEN;
pub use crate::event::{
    AuditEvent, DomainEvent, DomainEventOf, Event, IntegrationEvent, NotificationEvent, OwnedBy,
    PartitionKey, RoutedHere, RoutedTo, Service, SystemEvent, Topic, category,
};
pub use crate::{BoxFuture, EventBus, PublishError, Receipt};
pub use std::string::String;

/// What `#[derive(Aggregate)]`'s expansion names (features `postgres`/`sqlite`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod store {
    pub use crate::envelope::EventContext;
    pub use crate::error::PublishError;
    pub use crate::store::{
        Aggregate, AggregateEvent, Apply, EventOf, SnapshotPolicy, Typed, assert_domain_event_of,
        decode, snapshot_decode, snapshot_encode, typed,
    };
    pub use serde_json::Error as JsonError;
}

/// The serde that generated (YAML) types derive with: `#[serde(crate = "::eventbus::__private::serde")]`,
/// so a user's crate needs no serde dependency of its own.
pub use serde;

/// Concatenates string constants at compile time: `concat_const!("domain.", S::NAME, ".order")`.
#[macro_export]
#[doc(hidden)]
macro_rules! __concat_const {
    ($($part:expr),+ $(,)?) => {{
        const __PARTS: &[&str] = &[$($part),+];
        const __LEN: usize = $crate::__private::concat_len(__PARTS);
        const __BYTES: [u8; __LEN] = $crate::__private::concat_bytes(__PARTS);
        $crate::__private::utf8(&__BYTES)
    }};
}
pub use crate::__concat_const as concat_const;

/// The total length of `parts`.
pub const fn concat_len(parts: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        len += parts[i].len();
        i += 1;
    }
    len
}

/// `parts`, concatenated into an array of exactly `N` bytes.
pub const fn concat_bytes<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            out[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// Bytes concatenated from `&str`s, as a `&str`.
pub const fn utf8(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => panic!("concatenated strings are UTF-8"),
    }
}

/// String equality in constant context.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The service and topic of an event whose declaration has errors: it keeps the user's code
/// type-checking so the compiler reports only the declaration's error.
#[derive(Debug)]
pub enum InvalidEvent {}

impl Service for InvalidEvent {
    const NAME: &'static str = "";
}

impl Topic for InvalidEvent {
    const NAME: &'static str = "";
}

/// Checks an event's field type can be (de)serialized.
#[diagnostic::on_unimplemented(
    message = "field type `{Self}` of event `{E}` cannot be serialized",
    label = "not `Serialize` + `Deserialize`",
    note = "every field of an event payload is (de)serialized with serde: derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or mark the field `#[serde(skip)]`"
)]
pub trait PayloadField<E> {}
impl<E, T: serde::Serialize + serde::de::DeserializeOwned> PayloadField<E> for T {}

/// Checks an event's key field can be a partition key.
#[diagnostic::on_unimplemented(
    message = "field type `{Self}` of event `{E}` cannot be a partition key",
    label = "not a `PartitionKey`",
    note = "a key field (`aggregate_id`, `key`, `actor`, `recipient`) holds a string, an integer, a UUID, a bool or char, or an `Option` of those; implement `eventbus::PartitionKey` for `{Self}` to use it"
)]
pub trait KeyField<E> {
    /// The field's value as a partition key.
    fn field_key(&self) -> Option<String>;
}
impl<E, T: PartitionKey + ?Sized> KeyField<E> for T {
    fn field_key(&self) -> Option<String> {
        self.partition_key()
    }
}

/// Fails to compile unless `T` is a payload field type.
pub const fn assert_payload_field<E, T: PayloadField<E>>() {}

/// Implemented by `#[derive(Service)]` for the crate's default service (`#[service(default)]`):
/// an event that names no service requires it of the service it resolves to.
#[diagnostic::on_unimplemented(
    message = "`{E}` names no service, and this crate declares no default service",
    label = "an event without `service` belongs to the crate's default service",
    note = "declare the default service once, at the crate root: `#[derive(eventbus::Service)] #[service(name = \"...\", default)] pub struct MyService;`",
    note = "or name the owner on the event: `#[event(service = MyService)]` (an integration event: `#[event(source = MyService)]`)"
)]
pub trait CrateDefaultService<E: ?Sized> {}

/// Fails to compile unless `S` is the crate's default service (the message names event `E`).
pub const fn assert_default_service<S: CrateDefaultService<E>, E: ?Sized>() {}

/// The crate's default service as an event's expansion resolves it: `__EventbusDefaultService` at
/// the crate root, else a stand-in the expansion declares (whose `NAME` is empty).
pub trait DefaultServiceSlot {
    /// The resolved type.
    type Service: Service;
}

/// One Rust type per event type and version in a crate: each derive implements it for the
/// crate's `__EventbusClaims` (a crate-local type), keyed on the event's service, a 128-bit hash of its event type
/// without the service (`order.order_placed`) and its version. Two types claiming the same are
/// conflicting implementations (E0119), reported at both.
pub trait OneRustTypePerEventTypeAndVersion<
    S: ?Sized,
    const EVENT_TYPE_HASH: u128,
    const VERSION: u32,
>
{
}
