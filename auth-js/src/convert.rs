//! What crosses the JavaScript boundary: one string in (the request), one string out (the
//! decision, the token check, the status). One crossing each way costs far less than building
//! objects field by field through the bindings; an allowed decision and a valid token — the
//! hot answers — go out as NUL-separated fields that index.js splits into object literals
//! ([`crate::flat`]), everything else as JSON (measured: docs/benchmarks.md, "The npm package").

use auth_core::{Decision, GatewayStatus, Identity, TokenCheck};
use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::JsValue;

use crate::flat;

/// The request as index.js sends it: `method NUL target NUL name NUL value …` in UTF-8, and how
/// many items that is. Joined and encoded natively in JavaScript, split here in one pass: far
/// cheaper than JSON both ways. A NUL inside an item would shift every name and value after it
/// (a header read as another), so the count must match exactly.
pub(crate) struct RequestParts {
    text: String,
    /// Byte ranges of the items in `text`.
    items: Vec<(u32, u32)>,
}

impl RequestParts {
    fn item(&self, i: usize) -> &str {
        let (start, end) = self.items[i];
        &self.text[start as usize..end as usize]
    }

    pub fn method(&self) -> &str {
        self.item(0)
    }

    pub fn path(&self) -> &str {
        self.item(1)
    }

    /// `(name, value)` pairs in the order sent, repeated names kept.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        (2..self.items.len()).step_by(2).map(|i| (self.item(i), self.item(i + 1)))
    }

    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.header_pairs().collect()
    }
}

pub(crate) fn request(input: Vec<u8>, count: u32) -> Result<RequestParts, JsValue> {
    let bad = |what: &str| JsValue::from(js_sys::TypeError::new(&format!("decide(request): {what}")));
    let text = String::from_utf8(input).map_err(|_| bad("the request is not UTF-8"))?;
    let mut items = Vec::with_capacity(count as usize);
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == 0 {
            items.push((start as u32, i as u32));
            start = i + 1;
        }
    }
    items.push((start as u32, text.len() as u32));
    if items.len() != count as usize {
        return Err(bad("a method, target, header name or value contains NUL"));
    }
    if items.len() < 2 || items.len() % 2 != 0 {
        return Err(bad("method, target and a header list of even length"));
    }
    Ok(RequestParts { text, items })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdentityView<'a> {
    kind: &'static str,
    subject: &'a str,
    org: Option<&'a str>,
    email: Option<&'a str>,
    roles: Vec<&'a str>,
    scopes: Vec<&'a str>,
    session_id: Option<&'a str>,
    key_id: Option<&'a str>,
    issuer: Option<&'a str>,
    client_id: Option<&'a str>,
    token_id: Option<&'a str>,
    issued_at: Option<i64>,
    expires_at: Option<i64>,
    /// The verified claims as they were signed (JSON the core has already parsed).
    claims: Option<Box<RawValue>>,
}

fn identity(id: &Identity) -> IdentityView<'_> {
    // Checked here, not trusted: JSON text embedded as it is must be JSON.
    let claims = flat::claims_json(id).and_then(|json| RawValue::from_string(json).ok());
    IdentityView {
        kind: id.kind.as_str(),
        subject: &id.subject,
        org: id.org.as_deref(),
        email: id.email.as_deref(),
        roles: id.roles().collect(),
        scopes: id.scopes().collect(),
        session_id: id.session_id.as_deref(),
        key_id: id.key_id.as_deref(),
        issuer: id.issuer.as_deref(),
        client_id: id.client_id.as_deref(),
        token_id: id.token_id.as_deref(),
        issued_at: id.issued_at,
        expires_at: id.expires_at,
        claims,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AllowView<'a> {
    allow: bool,
    status: u16,
    identity: Option<IdentityView<'a>>,
    set_headers: Vec<(&'a str, &'a str)>,
    remove_headers: Vec<&'a str>,
    cache_hit: bool,
    route: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DenyView<'a> {
    allow: bool,
    status: u16,
    code: &'static str,
    description: &'a str,
    error_id: &'a str,
    headers: Vec<(&'static str, &'a str)>,
    remove_headers: Vec<&'a str>,
    body: String,
}

/// Allow: `{allow: true, status: 200, identity, setHeaders, removeHeaders, cacheHit, route}`;
/// deny: `{allow: false, status, code, description, errorId, headers, removeHeaders, body}`.
/// An allow goes out flat (see [`crate::flat`]) unless a field holds a NUL.
pub(crate) fn decision(d: &Decision) -> String {
    if let Decision::Allow(a) = d {
        if let Some(text) = flat::allow(a) {
            return text;
        }
    }
    let json = match d {
        Decision::Allow(a) => {
            let set = a.headers_to_set();
            serde_json::to_string(&AllowView {
                allow: true,
                status: 200,
                identity: a.identity.as_deref().map(identity),
                set_headers: set.iter().map(|(n, v)| (*n, v.as_ref())).collect(),
                remove_headers: a.remove_headers.iter().map(|h| h.as_ref()).collect(),
                cache_hit: a.cache_hit,
                route: a.route,
            })
        }
        Decision::Deny(d) => {
            let headers = d.response_headers();
            serde_json::to_string(&DenyView {
                allow: false,
                status: d.status(),
                code: d.code.as_str(),
                description: d.description(),
                error_id: &d.error_id,
                headers: headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
                remove_headers: d.remove_headers.iter().map(|h| h.as_ref()).collect(),
                body: d.body(),
            })
        }
    };
    // Serialising strings, numbers and already-valid JSON cannot fail.
    json.unwrap_or_default()
}

#[derive(Serialize)]
#[serde(untagged)]
enum TokenView<'a> {
    Valid { valid: bool, identity: IdentityView<'a> },
    Invalid { valid: bool, status: u16, code: &'static str, description: &'static str },
}

/// `{valid: true, identity}` or `{valid: false, status, code, description}`; a valid token
/// goes out flat (see [`crate::flat`]) unless a field holds a NUL.
pub(crate) fn token_check(c: &TokenCheck) -> String {
    if let TokenCheck::Valid(id) = c {
        if let Some(text) = flat::valid(id) {
            return text;
        }
    }
    let view = match c {
        TokenCheck::Valid(id) => TokenView::Valid { valid: true, identity: identity(id) },
        TokenCheck::Invalid { code, .. } => {
            TokenView::Invalid { valid: false, status: code.status(), code: code.as_str(), description: code.description() }
        }
        // Never converted: the host loop answers every check first. Refused if it were.
        TokenCheck::CheckSignature(_) => {
            let code = auth_core::ErrorCode::SignatureInvalid;
            TokenView::Invalid { valid: false, status: code.status(), code: code.as_str(), description: code.description() }
        }
    };
    serde_json::to_string(&view).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SourceView {
    source: String,
    url: String,
    last_success: Option<i64>,
    consecutive_failures: u32,
    has_material: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    sources: Vec<SourceView>,
    feed_version: Option<u64>,
    feed_expires_at: Option<i64>,
    revoked_entries: usize,
    cached_tokens: usize,
    signatures_checked_by_runtime: u64,
}

/// Material and cache state; times in unix milliseconds.
pub(crate) fn status(s: &GatewayStatus, runtime_checks: u64) -> String {
    let view = StatusView {
        sources: s
            .sources
            .iter()
            .map(|src| SourceView {
                source: src.source.key(),
                url: src.url.clone(),
                last_success: src.last_success.map(|t| t.millis()),
                consecutive_failures: src.consecutive_failures,
                has_material: src.has_material,
            })
            .collect(),
        feed_version: s.feed_version,
        feed_expires_at: s.feed_expires_at.map(|t| t.millis()),
        revoked_entries: s.revoked_entries,
        cached_tokens: s.cached_tokens,
        signatures_checked_by_runtime: runtime_checks,
    };
    serde_json::to_string(&view).unwrap_or_default()
}

/// The error `Core`'s constructor throws: `name` `AuthgateConfigError`, `code`
/// `config_invalid`, `field` the path of the bad field.
pub(crate) fn config_error(field: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(&format!("{field}: {message}"));
    e.set_name("AuthgateConfigError");
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str("config_invalid"));
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("field"), &JsValue::from_str(field));
    e.into()
}
