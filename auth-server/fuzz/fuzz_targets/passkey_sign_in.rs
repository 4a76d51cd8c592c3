//! An authenticator's answer to a passkey sign-in (the JSON a browser posts), through
//! webauthn-rs as the server calls it, under both user-verification policies.
#![no_main]

use std::sync::LazyLock;

use auth_server::fuzz::Passkeys;
use libfuzzer_sys::fuzz_target;

static PASSKEYS: LazyLock<Passkeys> = LazyLock::new(|| Passkeys::fixture(include_bytes!("../fixtures/passkey-registration.json")));

fuzz_target!(|answer: &[u8]| {
    PASSKEYS.sign_in(answer);
});
