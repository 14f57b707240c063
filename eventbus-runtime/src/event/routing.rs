//! Topic name rules (AD-004), checked at run time for events built at run time. The derives check
//! the same rules at compile time; both come from `eventbus-core`.

pub use eventbus_core::naming::{MAX_TOPIC_LEN, check_segment, check_topic};
