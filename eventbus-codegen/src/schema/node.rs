//! The YAML tree the schema reader walks: `eventbus_core::yaml` (shared with the runtime's
//! configuration file reader).

pub(crate) use eventbus_core::yaml::{Kind, Node, Pos, parse};
