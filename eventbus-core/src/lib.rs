//! The facts both halves of eventbus share, defined once: the compile-time half
//! (`eventbus-codegen`, run by the derive and by `build.rs`) emits statements and DDL from them,
//! the run-time half (`eventbus`) runs statements built from them. No dependencies, except for
//! the optional [`yaml`] tree (feature `yaml`: serde and serde-saphyr).
//!
//! - [`outbox`]: the outbox table (its columns, per dialect, for the outbox and its dead table),
//!   the SQL [`outbox::Dialect`]s, the table-name rule, the INSERT statements;
//! - [`store`]: the event store's table (its columns per dialect) and its append statements;
//! - [`category`]: the five categories, their names, and the default topic and CloudEvents type
//!   they give an event;
//! - [`naming`]: topic segment and topic rules;
//! - [`fnv1a`]: the hash of partition keys (stored shards depend on it never changing);
//! - `yaml` (feature `yaml`): a YAML document as a tree of located nodes, for the readers of
//!   schemas and of the configuration file.

pub mod category;
pub mod naming;
pub mod outbox;
pub mod store;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use category::Category;

/// FNV-1a, 64 bits: a key's hash, the same in every process and version (the outbox stores
/// `hash(key) mod shards` with each row, so it must never change).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of the FNV-1a 64-bit reference.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
