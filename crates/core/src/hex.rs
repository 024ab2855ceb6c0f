//! Lower-case hexadecimal, the form digests travel in (`const-hex`: SIMD where the CPU has it; offline verification decodes
//! two hashes per entry).

pub fn encode(bytes: &[u8]) -> String {
    const_hex::encode(bytes)
}

/// `None` unless `text` is an even number of hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    const_hex::decode(text).ok()
}

/// `None` unless `text` is exactly `2·N` hex digits; decoded in place, with no allocation.
pub fn decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    const_hex::decode_to_slice(text, &mut out).ok().map(|()| out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects_odd_or_non_hex() {
        assert_eq!(super::encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(super::decode("00abff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
        assert_eq!(super::decode_array::<2>("abff"), Some([0xab, 0xff]));
        assert_eq!(super::decode_array::<2>("abff00"), None);
        assert_eq!(super::decode_array::<2>("ab"), None);
        assert_eq!(super::decode_array::<1>("zz"), None);
    }
}
