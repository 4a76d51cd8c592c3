//! `crypto.subtle.importKey` + `verify`, reached through `globalThis` so the crate works in
//! every runtime that has WebCrypto, whatever else its global scope holds.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use auth_core::{Alg, HostKey, SignatureCheck};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// At most this many imported keys per isolate (issuers publish a handful; rotation adds one).
const MAX_KEYS: usize = 32;

/// `crypto.subtle`, its two methods, and each algorithm's (importKey, verify) parameters, made
/// once per isolate: a check then costs one call into JavaScript and two byte copies.
struct Subtle {
    subtle: JsValue,
    import_key: Function,
    verify: Function,
    /// EdDSA, ES256, RS256.
    algorithms: [(Object, Object); 3],
}

thread_local! {
    static KEYS: RefCell<Vec<(HostKey, JsValue)>> = const { RefCell::new(Vec::new()) };
    static ANSWERED: Cell<bool> = const { Cell::new(false) };
    static SUBTLE: RefCell<Option<Rc<Subtle>>> = const { RefCell::new(None) };
}

/// True once per isolate: the first time WebCrypto answered a check (worth one log line).
pub fn first_answer() -> bool {
    !ANSWERED.with(|a| a.replace(true))
}

fn object(pairs: &[(&str, &str)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v))?;
    }
    Ok(o)
}

fn subtle() -> Result<Rc<Subtle>, JsValue> {
    if let Some(found) = SUBTLE.with(|s| s.borrow().clone()) {
        return Ok(found);
    }
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle"))?;
    let import_key: Function = Reflect::get(&subtle, &JsValue::from_str("importKey"))?.dyn_into()?;
    let verify: Function = Reflect::get(&subtle, &JsValue::from_str("verify"))?.dyn_into()?;
    let algorithms = [
        (object(&[("name", "Ed25519")])?, object(&[("name", "Ed25519")])?),
        (object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?, object(&[("name", "ECDSA"), ("hash", "SHA-256")])?),
        (object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?, object(&[("name", "RSASSA-PKCS1-v1_5")])?),
    ];
    let found = Rc::new(Subtle { subtle, import_key, verify, algorithms });
    SUBTLE.with(|s| *s.borrow_mut() = Some(found.clone()));
    Ok(found)
}

/// WebCrypto's names for `alg`: (importKey algorithm, verify algorithm).
fn algorithms(s: &Subtle, alg: Alg) -> Result<&(Object, Object), JsValue> {
    Ok(match alg {
        Alg::EdDSA => &s.algorithms[0],
        Alg::ES256 => &s.algorithms[1],
        Alg::RS256 => &s.algorithms[2],
        Alg::HS256 => return Err(JsValue::from_str("HS256 is never delegated")),
    })
}

fn cached_key(key: &HostKey) -> Option<JsValue> {
    KEYS.with(|k| k.borrow().iter().find(|(h, _)| h == key).map(|(_, imported)| imported.clone()))
}

async fn import(s: &Subtle, check: &SignatureCheck) -> Result<JsValue, JsValue> {
    let (import_alg, _) = algorithms(s, check.alg)?;
    let spki = Uint8Array::from(&check.key.spki[..]);
    let usages = Array::of1(&JsValue::from_str("verify"));
    let args = Array::of5(&JsValue::from_str("spki"), &spki, import_alg, &JsValue::FALSE, &usages);
    let promise: Promise = s.import_key.apply(&s.subtle, &args)?.dyn_into()?;
    let key = JsFuture::from(promise).await?;
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.remove(0);
        }
        keys.push((check.key.clone(), key.clone()));
    });
    Ok(key)
}

/// `crypto.subtle.verify` over copies of the signature and the message: WebCrypto must never
/// read bytes of WebAssembly memory that the next request may have overwritten.
fn start_verify(s: &Subtle, check: &SignatureCheck, key: &JsValue) -> Result<Promise, JsValue> {
    let (_, verify_alg) = algorithms(s, check.alg)?;
    let signature = Uint8Array::from(&check.signature[..]);
    let message = Uint8Array::from(&check.message[..]);
    s.verify.call4(&s.subtle, verify_alg, key, &signature, &message)?.dyn_into()
}

/// What a JavaScript exception or rejection says: an `Error`'s message, a thrown string, else
/// its debug form. The one reading every wasm-bindgen host uses for its log lines.
pub fn js_message(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| e.as_string().unwrap_or_else(|| format!("{e:?}")))
}

/// `crypto.subtle.verify`'s promise for `check` (resolving to a boolean) when its key is
/// imported already — the host awaits it in JavaScript, no Rust future between; `None` when
/// the key must be imported first (then [`verify`]).
pub fn verify_started(check: &SignatureCheck) -> Option<Result<Promise, String>> {
    let key = cached_key(&check.key)?;
    Some(subtle().and_then(|s| start_verify(&s, check, &key)).map_err(js_message))
}

/// The runtime's verdict on `check`; `Err` if WebCrypto could not answer (then the host's own
/// code checks the signature).
pub async fn verify(check: &SignatureCheck) -> Result<bool, String> {
    let run = async {
        let s = subtle()?;
        let key = match cached_key(&check.key) {
            Some(key) => key,
            None => import(&s, check).await?,
        };
        JsFuture::from(start_verify(&s, check, &key)?).await
    };
    match run.await {
        Ok(v) => v.as_bool().ok_or_else(|| "crypto.subtle.verify answered a non-boolean".to_string()),
        Err(e) => Err(js_message(e)),
    }
}
