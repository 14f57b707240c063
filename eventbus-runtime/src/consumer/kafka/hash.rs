//! The consumer's hasher for its per-record maps.

/// A small multiply-rotate hasher for the consumer's per-record maps (partitions, key queues):
/// their keys are not chosen by an attacker (key hashes, topic names we subscribed to), and SipHash
/// showed in the record path's profile.
#[derive(Default)]
pub(super) struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type FastHash = std::hash::BuildHasherDefault<MixHasher>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::FastHash;

    fn hash(value: impl Hash) -> u64 {
        FastHash::default().hash_one(value)
    }

    #[test]
    fn equal_values_hash_equal_and_nearby_ones_apart() {
        assert_eq!(hash((1u32, 2i32, 3u64)), hash((1u32, 2i32, 3u64)));
        let many: std::collections::HashSet<u64> =
            (0..1_000i32).map(|p| hash((0u32, p, 7u64))).collect();
        assert_eq!(
            many.len(),
            1_000,
            "partitions 0..1000 of one key do not collide"
        );
    }
}
