//! Signature checks with the runtime's WebCrypto (`crypto.subtle`, BoringSSL in workerd),
//! answering auth-core's host-crypto step. Imported keys are kept per isolate under the key's
//! stable id, so a key is imported once, not once per request.

use std::cell::RefCell;

use auth_core::{Alg, HostAlgs, HostKey, SignatureCheck};
use worker::js_sys::{self, Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// WebCrypto verifies all three asymmetric algorithms.
pub const ALGS: HostAlgs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);

/// At most this many imported keys per isolate (issuers publish a handful; rotation adds one).
const MAX_KEYS: usize = 32;

thread_local! {
    static KEYS: RefCell<Vec<(HostKey, JsValue)>> = const { RefCell::new(Vec::new()) };
    static ANSWERED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
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

/// `crypto.subtle[method](...args)`, awaited.
async fn subtle(method: &str, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle"))?;
    let f: Function = Reflect::get(&subtle, &JsValue::from_str(method))?.dyn_into()?;
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
    let key = subtle("importKey", &[&JsValue::from_str("spki"), &spki, import_alg, &JsValue::FALSE, &usages]).await?;
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.remove(0);
        }
        keys.push((check.key.clone(), key.clone()));
    });
    Ok(key)
}

/// The runtime's verdict on `check`; `Err` if WebCrypto could not answer (then the worker's own
/// code checks the signature).
pub async fn verify(check: &SignatureCheck) -> Result<bool, String> {
    let run = async {
        let (import_alg, verify_alg) = algorithms(check.alg)?;
        let key = imported(check, &import_alg).await?;
        let signature = Uint8Array::from(&check.signature[..]);
        let message = Uint8Array::from(&check.message[..]);
        subtle("verify", &[&verify_alg, &key, &signature, &message]).await
    };
    match run.await {
        Ok(v) => v.as_bool().ok_or_else(|| "crypto.subtle.verify answered a non-boolean".to_string()),
        Err(e) => Err(e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_else(|| format!("{e:?}"))),
    }
}
