//! A SAML answer (the XML inside `SAMLResponse`) through the ACS's steps: the checks before
//! trust, libxmlsec1's signature check, the SAML rules and the identity read; and as if signed.
#![no_main]

use std::sync::LazyLock;

use auth_server::fuzz::{saml_response, SamlParties};
use libfuzzer_sys::fuzz_target;

static PARTIES: LazyLock<SamlParties> = LazyLock::new(SamlParties::fixture);

fuzz_target!(|xml: &[u8]| {
    saml_response(xml, &PARTIES);
});
