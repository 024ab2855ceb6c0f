//! Lower-case hexadecimal, the form digests travel in (`const-hex`: SIMD where the CPU has it; offline verification decodes
//! two hashes per entry).

pub fn encode(bytes: &[u8]) -> String {
    const_hex::encode(bytes)
}

/// `None` unless `text` is an even number of hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    const_hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_rejects_odd_or_non_hex() {
        assert_eq!(super::encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(super::decode("00abff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
    }
}
