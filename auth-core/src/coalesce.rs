//! Undoing header coalescing. HTTP intermediaries and APIs merge repeated header fields into one
//! comma-separated value (Envoy does it for `authorization`; the Fetch API's `Headers.get` does it
//! for every field). A request with two `authorization` headers must stay a request with two
//! credentials (400 `conflicting_credentials`), not become one malformed token, so hosts that
//! only see the merged value get this for free: `decide` splits credential fields with
//! [`credential_values`] itself.

/// The credential header fields `decide` reads, whose values never contain a comma themselves.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-api-secret"];

/// Splits a possibly merged value of a credential header (`name`, any case) into the values the
/// client sent. `authorization` is split only where every part is `<scheme> <credential>`
/// (so `Digest a="b", c="d"` stays whole); `x-api-key` / `x-api-secret` values (base64url) at
/// every comma. Any other header comes back as it is.
pub fn credential_values<'a>(name: &str, value: &'a str) -> impl Iterator<Item = &'a str> {
    let parts = || value.split(',').map(str::trim);
    let split = memchr::memchr(b',', value.as_bytes()).is_some()
        && CREDENTIAL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
        && (!name.eq_ignore_ascii_case("authorization") || parts().all(scheme_and_credential));
    let (whole, split) = if split { (None, Some(parts())) } else { (Some(value), None) };
    whole.into_iter().chain(split.into_iter().flatten())
}

/// `<scheme> <credential>`: a token scheme, one space, one word.
fn scheme_and_credential(part: &str) -> bool {
    match part.split_once(' ') {
        Some((scheme, cred)) => {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !cred.trim().is_empty()
                && !cred.trim().contains(' ')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_credentials_are_split_back() {
        assert_eq!(
            credential_values("Authorization", "Bearer a.b.c, Bearer d.e.f").collect::<Vec<_>>(),
            vec!["Bearer a.b.c", "Bearer d.e.f"]
        );
        assert_eq!(credential_values("authorization", "Bearer a.b.c,ApiKey k.s").collect::<Vec<_>>(), vec!["Bearer a.b.c", "ApiKey k.s"]);
        assert_eq!(credential_values("x-api-key", "agk_a, agk_b").collect::<Vec<_>>(), vec!["agk_a", "agk_b"]);
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert_eq!(credential_values("authorization", "Bearer a.b.c").collect::<Vec<_>>(), vec!["Bearer a.b.c"]);
        let digest = r#"Digest username="u", realm="r", nonce="n""#;
        assert_eq!(credential_values("authorization", digest).collect::<Vec<_>>(), vec![digest]);
        assert_eq!(credential_values("authorization", "Bearer a, b").collect::<Vec<_>>(), vec!["Bearer a, b"]);
        assert_eq!(credential_values("accept", "a, b").collect::<Vec<_>>(), vec!["a, b"]);
    }

    /// Every part must be `<scheme> <credential>`: a scheme of letters, digits, `-` and `_`, one
    /// credential without spaces. One part that is not keeps the value whole.
    #[test]
    fn each_part_must_be_a_scheme_and_one_credential() {
        assert_eq!(credential_values("authorization", "X-Key_2 a, Bearer b").collect::<Vec<_>>(), vec!["X-Key_2 a", "Bearer b"]);
        assert_eq!(credential_values("authorization", "Bearer b, X_Key a").collect::<Vec<_>>(), vec!["Bearer b", "X_Key a"]);
        for whole in ["B@d a, Bearer b", "Bearer b, Bé a", "Bearer a b, Bearer c", "Bearer c, Bearer a b", "Bearer a, Bearer"] {
            assert_eq!(credential_values("authorization", whole).collect::<Vec<_>>(), vec![whole], "{whole}");
        }
    }
}
