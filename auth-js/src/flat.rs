//! The hot answers (an allowed decision, a valid token) as NUL-separated fields, which index.js
//! (`answerOf`) splits into object literals: measured well under `JSON.parse` of the same
//! answer, which must look up every key (docs/benchmarks.md, "The npm package"). `None` when
//! a field holds a NUL (a claim may): the caller sends JSON then.
//!
//! Layout (every field a string; `?` marks the fields named in the presence mask):
//!
//! * allow: `A`, cache hit (`1` or empty), route, identity (or `-`), set-header count and
//!   name/value pairs, remove-header count and names;
//! * valid token: `V`, identity;
//! * identity: kind, presence mask (one `1`/`0` per `?` field, in order), subject, org?,
//!   email?, role count and roles, scope count and scopes, sessionId?, keyId?, issuer?,
//!   clientId?, tokenId?, issuedAt?, expiresAt?, claims? (JSON text, parsed when read).

use auth_core::{Allow, Identity};
use base64::Engine;

/// Fields as they are written, and how many.
struct Fields {
    out: String,
    count: usize,
}

impl Fields {
    fn new(tag: &str) -> Fields {
        let mut out = String::with_capacity(768);
        out.push_str(tag);
        Fields { out, count: 1 }
    }

    fn push(&mut self, field: &str) {
        self.out.push('\0');
        self.out.push_str(field);
        self.count += 1;
    }

    fn number(&mut self, n: i64) {
        self.push(itoa::Buffer::new().format(n));
    }

    /// A count, then the items (`items` makes the iterator twice: counted, then written).
    fn list<'a, I: Iterator<Item = &'a str>>(&mut self, items: impl Fn() -> I) {
        self.number(items().count() as i64);
        for item in items() {
            self.push(item);
        }
    }

    /// The text, unless a field held a NUL (then the separators do not count the fields).
    fn finish(self) -> Option<String> {
        let separators = self.out.bytes().filter(|&b| b == 0).count();
        (separators + 1 == self.count).then_some(self.out)
    }
}

pub(crate) fn allow(a: &Allow) -> Option<String> {
    let mut f = Fields::new("A");
    f.push(if a.cache_hit { "1" } else { "" });
    f.number(a.route as i64);
    match a.identity.as_deref() {
        Some(id) => identity(&mut f, id),
        None => f.push("-"),
    }
    let set = a.headers_to_set();
    f.number(set.len() as i64);
    for (name, value) in &set {
        f.push(name);
        f.push(value);
    }
    f.list(|| a.remove_headers.iter().map(|h| h.as_ref()));
    f.finish()
}

pub(crate) fn valid(id: &Identity) -> Option<String> {
    let mut f = Fields::new("V");
    identity(&mut f, id);
    f.finish()
}

/// The verified claims as JSON text: the payload (or API key claims) auth-core parsed as JSON
/// to judge it, so `JSON.parse` takes it too. `None` when there are none (a feed identity).
pub(crate) fn claims_json(id: &Identity) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&id.claims_b64).ok()?;
    String::from_utf8(raw).ok().filter(|json| !json.is_empty())
}

fn identity(f: &mut Fields, id: &Identity) {
    let claims = claims_json(id);
    let optional = [
        id.org.as_deref(),
        id.email.as_deref(),
        id.session_id.as_deref(),
        id.key_id.as_deref(),
        id.issuer.as_deref(),
        id.client_id.as_deref(),
        id.token_id.as_deref(),
    ];
    let numbers = [id.issued_at, id.expires_at];
    let mut mask = String::with_capacity(10);
    for present in optional.iter().map(Option::is_some).chain(numbers.iter().map(Option::is_some)).chain([claims.is_some()]) {
        mask.push(if present { '1' } else { '0' });
    }
    f.push(id.kind.as_str());
    f.push(&mask);
    f.push(&id.subject);
    let [org, email, session, key, issuer, client, token] = optional;
    f.push(org.unwrap_or(""));
    f.push(email.unwrap_or(""));
    f.list(|| id.roles());
    f.list(|| id.scopes());
    for v in [session, key, issuer, client, token] {
        f.push(v.unwrap_or(""));
    }
    for n in numbers {
        match n {
            Some(n) => f.number(n),
            None => f.push(""),
        }
    }
    f.push(claims.as_deref().unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_core::CredentialKind;

    fn someone() -> Identity {
        Identity {
            kind: CredentialKind::Jwt,
            subject: "user-1".into(),
            org: Some("org-1".into()),
            email: None,
            session_id: Some(String::new()),
            key_id: None,
            issuer: Some("https://issuer.test".into()),
            client_id: None,
            token_id: Some("jti-1".into()),
            issued_at: Some(-5),
            expires_at: None,
            claims_b64: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"user-1"}"#),
            roles_header: "reader,writer".into(),
            scope_header: String::new(),
        }
    }

    #[test]
    fn a_valid_token_is_its_fields_in_order_with_a_presence_mask() {
        let text = valid(&someone()).unwrap();
        let fields: Vec<&str> = text.split('\0').collect();
        assert_eq!(
            fields,
            [
                "V",
                "jwt",
                "1010101101",
                "user-1",
                "org-1",
                "",
                "2",
                "reader",
                "writer",
                "0",
                "",
                "",
                "https://issuer.test",
                "",
                "jti-1",
                "-5",
                "",
                r#"{"sub":"user-1"}"#
            ]
        );
    }

    #[test]
    fn a_nul_in_any_field_sends_json_instead() {
        let mut id = someone();
        id.subject = "user\u{0}x-auth-org".into();
        assert_eq!(valid(&id), None);
        let mut id = someone();
        id.claims_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{\"a\":\"\0\"}");
        assert_eq!(valid(&id), None);
    }

    #[test]
    fn claims_that_do_not_decode_are_absent() {
        let mut id = someone();
        id.claims_b64 = String::new();
        let text = valid(&id).unwrap();
        assert!(text.split('\0').nth(2).unwrap().ends_with('0'));
        assert!(text.ends_with('\0'));
        id.claims_b64 = "%%".into();
        assert!(valid(&id).unwrap().split('\0').nth(2).unwrap().ends_with('0'));
    }
}
