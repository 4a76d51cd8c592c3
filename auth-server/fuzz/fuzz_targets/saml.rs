//! A SAML answer (the XML inside `SAMLResponse`) through the ACS's steps: the checks before
//! trust, libxmlsec1's signature check, the SAML rules and the identity read; and as if signed.
#![no_main]

use auth_server::fuzz::{saml_response, SamlParties};
use libfuzzer_sys::fuzz_target;

/// The parties and clock of auth-server/fuzz/make_seeds.py.
const PARTIES: SamlParties = SamlParties {
    now: 1_800_000_000,
    idp: "https://idp.example/saml",
    sp: "https://auth.example/saml/conn/metadata",
    acs: "https://auth.example/saml/conn/acs",
    request_id: "_request",
    idp_certificate: include_str!("../fixtures/saml-idp-cert.b64"),
};

fuzz_target!(|xml: &[u8]| {
    saml_response(xml, &PARTIES);
});
