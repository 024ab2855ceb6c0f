//! Many short messages hashed at once, one per SIMD lane (16 at a time with AVX-512, 8 with AVX2,
//! 4 with SSE4.1): what makes recomputing every field commitment of a log cheap.
//!
//! The `blake3` crate does this internally for the chunks of one long input, and exposes it only
//! through its `platform` module, marked unstable. We use it rather than a SIMD BLAKE3 of our own:
//! the workspace pins the exact `blake3` version, so a change there fails the build instead of
//! going unnoticed, and `tests` below checks every lane width against plain `blake3::keyed_hash`.

use blake3::IncrementCounter;
use blake3::platform::Platform;

/// The longest message (in 64-byte blocks) hashed in lanes: one BLAKE3 chunk.
pub const MAX_BLOCKS: usize = 16;

// BLAKE3's domain flags (section 2.1 of the specification).
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const ROOT: u8 = 1 << 3;
const KEYED_HASH: u8 = 1 << 4;

/// `BLAKE3-keyed(key, m)` of every `blocks`·64-byte message `m` laid end to end in `input`,
/// written to `out` 32 bytes each, in order. `blocks` is 1 ..= [`MAX_BLOCKS`].
pub fn keyed_hash_many(platform: Platform, key: &[u8; 32], blocks: usize, input: &[u8], out: &mut [u8]) {
    let key_words: [u32; 8] = std::array::from_fn(|i| u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().unwrap()));
    macro_rules! by_length {
        ($($blocks:literal)*) => {
            match blocks {
                $($blocks => many::<{ 64 * $blocks }>(platform, &key_words, input, out),)*
                _ => panic!("{blocks} blocks is not 1 ..= {MAX_BLOCKS}"),
            }
        };
    }
    by_length!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

fn many<const N: usize>(platform: Platform, key: &[u32; 8], input: &[u8], out: &mut [u8]) {
    assert_eq!(input.len() % N, 0, "whole messages only");
    let messages: Vec<&[u8; N]> = input.chunks_exact(N).map(|m| m.try_into().expect("N bytes")).collect();
    assert_eq!(out.len(), 32 * messages.len(), "one hash per message");
    // Each message is a whole single-chunk input: counter 0, and its last block is also the root.
    platform.hash_many(&messages, key, 0, IncrementCounter::No, KEYED_HASH, CHUNK_START, CHUNK_END | ROOT, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_width_hashes_as_blake3_does() {
        let key = *blake3::hash(b"lanes test key").as_bytes();
        for platform in [Some(Platform::portable()), Platform::sse41(), Platform::avx2(), Platform::avx512()]
            .into_iter()
            .flatten()
            .chain([Platform::detect()])
        {
            for blocks in 1..=MAX_BLOCKS {
                // More messages than lanes, and a count that is not a multiple of them.
                let count = 37;
                let input: Vec<u8> = (0..count * blocks * 64).map(|i| (i * 7 + blocks) as u8).collect();
                let mut out = vec![0u8; 32 * count];
                keyed_hash_many(platform, &key, blocks, &input, &mut out);
                for (m, h) in input.chunks(blocks * 64).zip(out.chunks(32)) {
                    assert_eq!(h, blake3::keyed_hash(&key, m).as_bytes(), "{blocks} blocks");
                }
            }
        }
    }
}
