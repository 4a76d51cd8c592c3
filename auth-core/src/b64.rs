//! Strict base64url: no padding, no whitespace, canonical trailing bits (RFC 7515 §2).
//! `decode_into` writes into the caller's buffer, so a token's segments decode with no
//! allocation: natively with `base64-simd` (SIMD chosen at run time), in WebAssembly with the
//! `base64` crate's `URL_SAFE_NO_PAD` engine, which also encodes everywhere. A property test holds
//! the two decoders to the same answers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// How many bytes `encoded_len` characters decode to; `None` for a length no unpadded
/// encoding has (one character past a multiple of four).
pub fn decoded_len(encoded_len: usize) -> Option<usize> {
    match encoded_len % 4 {
        1 => None,
        rest => Some(encoded_len / 4 * 3 + rest.saturating_sub(1)),
    }
}

/// Decodes strict unpadded base64url into the front of `out`; the decoded length, or `None` on
/// any deviation (padding, `+`, `/`, whitespace, non-canonical trailing bits) or if `out` is too
/// short.
pub fn decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let out = out.get_mut(..decoded_len(input.len())?)?;
    #[cfg(not(target_arch = "wasm32"))]
    return base64_simd::URL_SAFE_NO_PAD.decode(input, base64_simd::Out::from_slice(out)).ok().map(|d| d.len());
    #[cfg(target_arch = "wasm32")]
    return scalar_decode_into(input, out);
}

/// The `base64` crate's decoder, into an exactly sized `out`.
#[cfg(any(target_arch = "wasm32", test))]
fn scalar_decode_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    URL_SAFE_NO_PAD.decode_slice(input, out).ok()
}

/// Decodes strict unpadded base64url; `None` on any deviation (padding, `+`, `/`, whitespace).
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; decoded_len(input.len())?];
    decode_into(input, &mut out)?;
    Some(out)
}

/// Decodes into a fixed-size array; `None` unless exactly `N` bytes come out.
pub fn decode_array<const N: usize>(input: &[u8]) -> Option<[u8; N]> {
    if decoded_len(input.len())? != N {
        return None;
    }
    let mut out = [0u8; N];
    decode_into(input, &mut out)?;
    Some(out)
}

/// Encodes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strictness() {
        assert_eq!(decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode(b"YWI"), Some(b"ab".to_vec()));
        assert_eq!(decode(b"YQ"), Some(b"a".to_vec()));
        assert_eq!(decode(b""), Some(Vec::new()));
        assert!(decode(b"YWI=").is_none(), "padding is refused");
        assert!(decode(b"YW+j").is_none(), "standard alphabet is refused");
        assert!(decode(b"YW J").is_none());
        assert!(decode(b"YWK").is_none(), "non-canonical trailing bits are refused");
        assert!(decode(b"YR").is_none(), "non-canonical trailing bits are refused");
        assert!(decode(b"YWJjZ").is_none(), "one character past a multiple of four");
        assert!(decode("YWJ\u{e9}".as_bytes()).is_none(), "non-ASCII");
        assert_eq!(decode_array::<3>(b"YWJj"), Some(*b"abc"));
        assert_eq!(decode_array::<2>(b"YWJj"), None);
        assert_eq!(decode_array::<4>(b"YWJj"), None);
        assert_eq!(decode_array::<32>(&[b'A'; 1 << 20]), None, "far too long");
        assert_eq!(decode_array::<32>(&[b'A'; 44]), None, "one character too many");
        assert_eq!(decode_array::<32>(&[b'A'; 43]), Some([0; 32]));
        let mut short = [0u8; 2];
        assert_eq!(decode_into(b"YWJj", &mut short), None, "an output too short is refused, not overrun");
    }

    /// Characters around and inside the alphabet, so that most inputs are nearly valid.
    fn encodedish() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            60 => proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
            1 => proptest::sample::select(b"+/= .\n\0\x7f".to_vec()),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..70)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Both decoders answer as the `base64` crate's allocating decode does, into a buffer
        /// larger than needed too (`decoded_len` is exact, never an estimate that cuts or pads).
        #[test]
        fn decodes_exactly_as_the_base64_crate(input in encodedish()) {
            let expected = URL_SAFE_NO_PAD.decode(&input).ok();
            prop_assert_eq!(&decode(&input), &expected);
            if let Some(n) = decoded_len(input.len()) {
                let mut roomy = vec![0xAA; n + 5];
                prop_assert_eq!(decode_into(&input, &mut roomy).map(|k| roomy[..k].to_vec()), expected.clone());
                let mut exact = vec![0xAA; n];
                prop_assert_eq!(scalar_decode_into(&input, &mut exact).map(|k| exact[..k].to_vec()), expected);
            }
        }

        #[test]
        fn what_is_encoded_decodes_back(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode(encode(&bytes).as_bytes()), Some(bytes));
        }
    }
}
