//! Strict base64url: no padding, no whitespace, canonical trailing bits (RFC 7515 §2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes strict unpadded base64url; `None` on any deviation (padding, `+`, `/`, whitespace).
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Decodes into a fixed-size array; `None` unless exactly `N` bytes come out.
pub fn decode_array<const N: usize>(input: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // Longer input fails as the output fills (`OutputSliceTooSmall`): no bound needed here.
    match URL_SAFE_NO_PAD.decode_slice(input, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

/// Encodes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        assert_eq!(decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode(b"YWI"), Some(b"ab".to_vec()));
        assert!(decode(b"YWI=").is_none(), "padding is refused");
        assert!(decode(b"YW+j").is_none(), "standard alphabet is refused");
        assert!(decode(b"YW J").is_none());
        assert!(decode(b"YWK").is_none(), "non-canonical trailing bits are refused");
        assert_eq!(decode_array::<3>(b"YWJj"), Some(*b"abc"));
        assert_eq!(decode_array::<2>(b"YWJj"), None);
        assert_eq!(decode_array::<4>(b"YWJj"), None);
        assert_eq!(decode_array::<32>(&[b'A'; 1 << 20]), None, "far too long");
        assert_eq!(decode_array::<32>(&[b'A'; 44]), None, "one character too many");
        assert_eq!(decode_array::<32>(&[b'A'; 43]), Some([0; 32]));
    }
}
