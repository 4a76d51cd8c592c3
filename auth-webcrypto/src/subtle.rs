//! `crypto.subtle.importKey` + `verify`, reached through `globalThis` so the crate works in
//! every runtime that has WebCrypto, whatever else its global scope holds.

use std::cell::{Cell, RefCell};

use auth_core::{Alg, HostKey, SignatureCheck};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// At most this many imported keys per isolate (issuers publish a handful; rotation adds one).
const MAX_KEYS: usize = 32;

thread_local! {
    static KEYS: RefCell<Vec<(HostKey, JsValue)>> = const { RefCell::new(Vec::new()) };
    static ANSWERED: Cell<bool> = const { Cell::new(false) };
    static SUBTLE: RefCell<Option<(JsValue, Function, Function)>> = const { RefCell::new(None) };
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

/// WebCrypto's names: (importKey algorithm, verify algorithm).
fn algorithms(alg: Alg) -> Result<(Object, Object), JsValue> {
    Ok(match alg {
        Alg::EdDSA => (object(&[("name", "Ed25519")])?, object(&[("name", "Ed25519")])?),
        Alg::ES256 => (object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?, object(&[("name", "ECDSA"), ("hash", "SHA-256")])?),
        Alg::RS256 => (object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?, object(&[("name", "RSASSA-PKCS1-v1_5")])?),
        Alg::HS256 => return Err(JsValue::from_str("HS256 is never delegated")),
    })
}

#[derive(Clone, Copy)]
enum Method {
    ImportKey,
    Verify,
}

/// `crypto.subtle` and its two methods, looked up once per isolate.
fn subtle_fns() -> Result<(JsValue, Function, Function), JsValue> {
    if let Some(found) = SUBTLE.with(|s| s.borrow().clone()) {
        return Ok(found);
    }
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle"))?;
    let import_key: Function = Reflect::get(&subtle, &JsValue::from_str("importKey"))?.dyn_into()?;
    let verify: Function = Reflect::get(&subtle, &JsValue::from_str("verify"))?.dyn_into()?;
    let found = (subtle, import_key, verify);
    SUBTLE.with(|s| *s.borrow_mut() = Some(found.clone()));
    Ok(found)
}

/// `crypto.subtle[method](...args)`, awaited.
async fn subtle(method: Method, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let (subtle, import_key, verify) = subtle_fns()?;
    let f = match method {
        Method::ImportKey => import_key,
        Method::Verify => verify,
    };
    let args: Array = args.iter().copied().collect();
    let promise: Promise = f.apply(&subtle, &args)?.dyn_into()?;
    JsFuture::from(promise).await
}

async fn imported(check: &SignatureCheck, import_alg: &Object) -> Result<JsValue, JsValue> {
    if let Some(key) = KEYS.with(|k| k.borrow().iter().find(|(h, _)| *h == check.key).map(|(_, key)| key.clone())) {
        return Ok(key);
    }
    let spki = Uint8Array::from(&check.key.spki[..]);
    let usages: Array = [JsValue::from_str("verify")].into_iter().collect();
    let key = subtle(Method::ImportKey, &[&JsValue::from_str("spki"), &spki, import_alg, &JsValue::FALSE, &usages]).await?;
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.remove(0);
        }
        keys.push((check.key.clone(), key.clone()));
    });
    Ok(key)
}

/// The runtime's verdict on `check`; `Err` if WebCrypto could not answer (then the host's own
/// code checks the signature).
pub async fn verify(check: &SignatureCheck) -> Result<bool, String> {
    let run = async {
        let (import_alg, verify_alg) = algorithms(check.alg)?;
        let key = imported(check, &import_alg).await?;
        let signature = Uint8Array::from(&check.signature[..]);
        let message = Uint8Array::from(&check.message[..]);
        subtle(Method::Verify, &[&verify_alg, &key, &signature, &message]).await
    };
    match run.await {
        Ok(v) => v.as_bool().ok_or_else(|| "crypto.subtle.verify answered a non-boolean".to_string()),
        Err(e) => Err(e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{e:?}"))),
    }
}
