//! Partition keys: what a key field may hold, and how a key is hashed (the outbox's shard, the
//! consumer's key queue, with [`eventbus_core::fnv1a`]).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

/// A value that can be a partition key. Records with equal keys keep their order.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a partition key",
    label = "not usable as a key",
    note = "a key field (`aggregate_id`, `key`, `actor`, `recipient`) holds a string, an integer, a UUID, a bool or char, or an `Option` of those; implement `eventbus::PartitionKey` for `{Self}` to use it"
)]
pub trait PartitionKey {
    /// The key's text; `None` sends the record without a key.
    fn partition_key(&self) -> Option<String>;
}

impl PartitionKey for str {
    fn partition_key(&self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl PartitionKey for String {
    fn partition_key(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl PartitionKey for uuid::Uuid {
    fn partition_key(&self) -> Option<String> {
        Some(self.as_hyphenated().to_string())
    }
}

macro_rules! display_keys {
    ($($t:ty),*) => {$(
        impl PartitionKey for $t {
            fn partition_key(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
display_keys!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char
);

impl<T: PartitionKey + ?Sized> PartitionKey for &T {
    fn partition_key(&self) -> Option<String> {
        (**self).partition_key()
    }
}

impl<T: PartitionKey + ?Sized> PartitionKey for Box<T> {
    fn partition_key(&self) -> Option<String> {
        (**self).partition_key()
    }
}

impl<T: PartitionKey + ?Sized> PartitionKey for Arc<T> {
    fn partition_key(&self) -> Option<String> {
        (**self).partition_key()
    }
}

impl<T: PartitionKey + ?Sized> PartitionKey for Rc<T> {
    fn partition_key(&self) -> Option<String> {
        (**self).partition_key()
    }
}

impl<T: PartitionKey + ToOwned + ?Sized> PartitionKey for Cow<'_, T> {
    fn partition_key(&self) -> Option<String> {
        self.as_ref().partition_key()
    }
}

impl<T: PartitionKey> PartitionKey for Option<T> {
    fn partition_key(&self) -> Option<String> {
        self.as_ref().and_then(PartitionKey::partition_key)
    }
}

pub(crate) use eventbus_core::fnv1a;
