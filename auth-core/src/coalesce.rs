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
pub fn credential_values<'a>(name: &str, value: &'a str) -> Vec<&'a str> {
    if !value.contains(',') || !CREDENTIAL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        return vec![value];
    }
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !name.eq_ignore_ascii_case("authorization") {
        return parts;
    }
    let scheme_and_credential = |p: &&str| match p.split_once(' ') {
        Some((scheme, cred)) => {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !cred.trim().is_empty()
                && !cred.trim().contains(' ')
        }
        None => false,
    };
    if parts.iter().all(scheme_and_credential) {
        parts
    } else {
        vec![value]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_credentials_are_split_back() {
        assert_eq!(credential_values("Authorization", "Bearer a.b.c, Bearer d.e.f"), vec!["Bearer a.b.c", "Bearer d.e.f"]);
        assert_eq!(credential_values("authorization", "Bearer a.b.c,ApiKey k.s"), vec!["Bearer a.b.c", "ApiKey k.s"]);
        assert_eq!(credential_values("x-api-key", "agk_a, agk_b"), vec!["agk_a", "agk_b"]);
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert_eq!(credential_values("authorization", "Bearer a.b.c"), vec!["Bearer a.b.c"]);
        let digest = r#"Digest username="u", realm="r", nonce="n""#;
        assert_eq!(credential_values("authorization", digest), vec![digest]);
        assert_eq!(credential_values("authorization", "Bearer a, b"), vec!["Bearer a, b"]);
        assert_eq!(credential_values("accept", "a, b"), vec!["a, b"]);
    }

    /// Every part must be `<scheme> <credential>`: a scheme of letters, digits, `-` and `_`, one
    /// credential without spaces. One part that is not keeps the value whole.
    #[test]
    fn each_part_must_be_a_scheme_and_one_credential() {
        assert_eq!(credential_values("authorization", "X-Key_2 a, Bearer b"), vec!["X-Key_2 a", "Bearer b"]);
        assert_eq!(credential_values("authorization", "Bearer b, X_Key a"), vec!["Bearer b", "X_Key a"]);
        for whole in ["B@d a, Bearer b", "Bearer b, Bé a", "Bearer a b, Bearer c", "Bearer c, Bearer a b", "Bearer a, Bearer"] {
            assert_eq!(credential_values("authorization", whole), vec![whole], "{whole}");
        }
    }
}
