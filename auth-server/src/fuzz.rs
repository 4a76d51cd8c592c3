//! Entry points for the fuzz targets (auth-server/fuzz): what identity providers and browsers
//! send, through the functions the server runs on it. Built only with `--cfg fuzzing`.

use serde_json::Value;
use webauthn_rs::prelude::{Credential, Passkey, PublicKeyCredential, SecurityKey, Uuid};
use webauthn_rs::Webauthn;

use crate::config::Config;
pub use crate::federation::fuzz::{oidc_id_token, saml_response, OidcParties, OidcProvider, SamlParties};
use crate::passkeys::{self, RegistrationState, SignInState};

/// A relying party with its challenges fixed, so that an input can answer them, and a passkey
/// registered by a known answer, for sign-ins to name.
pub struct Passkeys {
    rp: Webauthn,
    /// Under `required` and `preferred` user verification.
    registrations: Vec<RegistrationState>,
    sign_ins: Vec<SignInState>,
    passkey: Passkey,
}

/// `value` with every `challenge` string in it replaced by `challenge` (base64url): webauthn-rs
/// draws challenges at random, a fuzz target needs one it can answer.
fn fix_challenges(value: &mut Value, challenge: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "challenge" && v.is_string() {
                    *v = Value::String(challenge.to_string());
                } else {
                    fix_challenges(v, challenge);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fix_challenges(v, challenge)),
        _ => {}
    }
}

fn fixed<T: serde::Serialize + serde::de::DeserializeOwned>(state: T, challenge: &str) -> T {
    let mut value = serde_json::to_value(state).expect("webauthn-rs states serialise");
    fix_challenges(&mut value, challenge);
    serde_json::from_value(value).expect("webauthn-rs states deserialise")
}

/// The fixture of auth-server/fuzz/make_seeds.py: its relying party, challenge and user handle.
pub const PASSKEY_PUBLIC_URL: &str = "http://localhost:8080";
pub const PASSKEY_CHALLENGE: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
pub const PASSKEY_USER_HANDLE: &str = "00112233-4455-6677-8899-aabbccddeeff";

impl Passkeys {
    /// [`Passkeys::new`] with make_seeds.py's fixture; `registration` is its
    /// `fixtures/passkey-registration.json`.
    pub fn fixture(registration: &[u8]) -> Passkeys {
        let handle = PASSKEY_USER_HANDLE.parse().expect("a UUID");
        Passkeys::new(PASSKEY_PUBLIC_URL, PASSKEY_CHALLENGE, handle, registration)
    }

    /// The relying party of `public_url` (as the server builds it), every challenge
    /// `challenge` (base64url), and the passkey that `registration` (an authenticator's JSON
    /// answer to a passkey registration of `user_handle`) registers. Panics when that answer
    /// does not register: the fixture and the seeds must agree.
    pub fn new(public_url: &str, challenge: &str, user_handle: Uuid, registration: &[u8]) -> Passkeys {
        let cfg = Config { public_url: public_url.to_string(), ..Config::default() };
        let rp = passkeys::relying_party(&cfg).expect("relying party").expect("passkeys on");
        let user = "someone@example.com";
        let (_, passkey) = rp.start_passkey_registration(user_handle, user, user, None).expect("passkey registration");
        let (_, security_key) =
            rp.start_securitykey_registration(user_handle, user, user, None, None, None).expect("security key registration");
        let registrations =
            vec![RegistrationState::Passkey(fixed(passkey, challenge)), RegistrationState::SecurityKey(fixed(security_key, challenge))];
        let answer: Value = serde_json::from_slice(registration).expect("the registration fixture is JSON");
        let passkey = passkeys::registered(&rp, &registrations[0], answer).expect("the registration fixture registers");
        let (_, discoverable) = rp.start_discoverable_authentication().expect("discoverable sign-in");
        let keys = [SecurityKey::from(Credential::from(passkey.clone()))];
        let (_, account) = rp.start_securitykey_authentication(&keys).expect("security key sign-in");
        let sign_ins = vec![
            SignInState::Discoverable(fixed(discoverable, challenge)),
            SignInState::Account { user_id: "someone".into(), state: fixed(account, challenge) },
        ];
        Passkeys { rp, registrations, sign_ins, passkey }
    }

    /// An authenticator's answer to a registration, under both user-verification policies;
    /// returns how many registered it.
    pub fn registration(&self, answer: &[u8]) -> usize {
        let Ok(answer) = serde_json::from_slice::<Value>(answer) else { return 0 };
        let mut accepted = 0;
        for state in &self.registrations {
            if let Ok(passkey) = passkeys::registered(&self.rp, state, answer.clone()) {
                assert!(!AsRef::<[u8]>::as_ref(passkey.cred_id()).is_empty(), "a passkey without a credential id");
                accepted += 1;
            }
        }
        accepted
    }

    /// An authenticator's answer to a sign-in challenge, discoverable and for one account: the
    /// passkey it names, then the signature against it. A signature is only accepted from the
    /// registered passkey's credential. Returns how many of the two challenges it answered.
    pub fn sign_in(&self, answer: &[u8]) -> usize {
        let Ok(answer) = serde_json::from_slice::<PublicKeyCredential>(answer) else { return 0 };
        let mut accepted = 0;
        for state in &self.sign_ins {
            let state: SignInState = serde_json::from_value(serde_json::to_value(state).expect("state")).expect("state");
            let Some((_, _, cred_id)) = passkeys::named_passkey(&self.rp, &state, &answer) else { continue };
            if let Ok(result) = passkeys::signed_in(&self.rp, state, &answer, &self.passkey) {
                assert_eq!(
                    AsRef::<[u8]>::as_ref(result.cred_id()),
                    AsRef::<[u8]>::as_ref(self.passkey.cred_id()),
                    "another credential signed in"
                );
                assert_eq!(cred_id, AsRef::<[u8]>::as_ref(self.passkey.cred_id()), "the answer named another credential");
                accepted += 1;
            }
        }
        accepted
    }
}

/// The fuzz targets' seeds (auth-server/fuzz/make_seeds.py) reach acceptance through their
/// entry points, each where it should and nowhere else: a campaign starts from answers that pass
/// every check.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::federation::Kind;

    fn fuzz_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    fn seed(target: &str, name: &str) -> Vec<u8> {
        std::fs::read(fuzz_dir().join("seeds").join(target).join(name)).unwrap()
    }

    #[test]
    fn saml_seeds() {
        // Signed: through the signature and as if signed; unsigned: only as if signed.
        for (name, accepted) in [("signed-assertion.xml", 2), ("signed-both.xml", 2), ("signed-none.xml", 1), ("other-audience.xml", 0)] {
            assert_eq!(saml_response(&seed("saml", name), &SamlParties::fixture()), accepted, "{name}");
        }
    }

    #[test]
    fn oidc_seeds() {
        let provider = OidcProvider::default();
        for (name, kinds) in [
            ("generic.json", vec![Kind::Oidc]),
            ("azp.json", vec![Kind::Oidc]),
            ("google.json", vec![Kind::Google]),
            ("microsoft.json", vec![Kind::Microsoft]),
            ("entra.json", vec![Kind::Entra]),
            ("wrong-nonce.json", vec![]),
        ] {
            assert_eq!(provider.judge(&seed("oidc_id_token", name)), kinds, "{name}");
        }
    }

    #[test]
    fn passkey_seeds() {
        let registration = std::fs::read(fuzz_dir().join("fixtures/passkey-registration.json")).unwrap();
        let passkeys = Passkeys::fixture(&registration);
        // User verification: both policies take it; without it only `preferred` does.
        for (name, accepted) in [("uv.json", 2), ("no-uv.json", 1), ("packed-without-statement.json", 0)] {
            assert_eq!(passkeys.registration(&seed("passkey_registration", name)), accepted, "registration {name}");
        }
        // The fixture registered with user verification: a sign-in without it is refused under
        // either policy (webauthn-rs: no downgrade). Without a user handle the discoverable
        // sign-in names nobody; the account's challenge still knows whose it is.
        for (name, accepted) in [("uv.json", 2), ("no-uv.json", 0), ("no-user-handle.json", 1)] {
            assert_eq!(passkeys.sign_in(&seed("passkey_sign_in", name)), accepted, "sign-in {name}");
        }
    }
}
