//! Signature checks with the JavaScript runtime's WebCrypto (`crypto.subtle`: BoringSSL in
//! workerd, OpenSSL in Node, Deno and Bun, the browser's own elsewhere), answering auth-core's
//! host-crypto step for every wasm-bindgen host (the edge worker, the npm package). Imported
//! keys are kept per isolate under the key's stable id, so a key is imported once, not once
//! per request.

use auth_core::{Alg, HostAlgs};

/// WebCrypto verifies all three asymmetric algorithms; HS256 always stays in the core.
pub const ALGS: HostAlgs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);

#[cfg(target_arch = "wasm32")]
mod subtle;
#[cfg(target_arch = "wasm32")]
pub use subtle::{first_answer, js_message, verify, verify_started};
