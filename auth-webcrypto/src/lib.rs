//! Signature checks with the JavaScript runtime's WebCrypto (`crypto.subtle`: BoringSSL in
//! workerd, OpenSSL in Node, Deno and Bun, the browser's own elsewhere), answering auth-core's
//! host-crypto step for every wasm-bindgen host (the edge worker, the npm package). Imported
//! keys are kept per isolate under the key's stable id, so a key is imported once, not once
//! per request. [`Handles`] number the decisions JavaScript holds while WebCrypto answers.

use auth_core::{Alg, HostAlgs};

/// WebCrypto verifies all three asymmetric algorithms; HS256 always stays in the core.
pub const ALGS: HostAlgs = HostAlgs::NONE.with(Alg::EdDSA).with(Alg::ES256).with(Alg::RS256);

/// How many signatures one request may hand to WebCrypto. Keys can change while a check is
/// awaited (a refetch applied meanwhile): then the core asks about the new key; past this many
/// asks the core checks the rest itself.
pub const ASKS_PER_REQUEST: u8 = 3;

/// What a pass may hand to WebCrypto: nothing once WebCrypto failed (`works` false), or once the
/// request has used its asks.
pub const fn algs(works: bool, asks_left: u8) -> HostAlgs {
    if works && asks_left > 0 {
        ALGS
    } else {
        HostAlgs::NONE
    }
}

mod handles;
pub use handles::Handles;

#[cfg(target_arch = "wasm32")]
mod subtle;
#[cfg(target_arch = "wasm32")]
pub use subtle::{first_answer, js_message, verify, verify_started};
