//! An authenticator's answer to a passkey sign-in (the JSON a browser posts), through
//! webauthn-rs as the server calls it, under both user-verification policies.
#![no_main]

use std::sync::LazyLock;

use auth_server::fuzz::Passkeys;
use libfuzzer_sys::fuzz_target;

/// The relying party, challenge and user handle of auth-server/fuzz/make_seeds.py, with the
/// passkey its registration fixture registers.
static PASSKEYS: LazyLock<Passkeys> = LazyLock::new(|| {
    let handle = "00112233-4455-6677-8899-aabbccddeeff".parse().expect("uuid");
    let challenge = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
    Passkeys::new("http://localhost:8080", challenge, handle, include_bytes!("../fixtures/passkey-registration.json"))
});

fuzz_target!(|answer: &[u8]| {
    PASSKEYS.sign_in(answer);
});
