//! An ID token's claims (any bytes as its payload), signed by the provider, through the OpenID
//! Connect checks and each preset's reading of them.
#![no_main]

use std::sync::LazyLock;

use auth_server::fuzz::OidcProvider;
use libfuzzer_sys::fuzz_target;

static PROVIDER: LazyLock<OidcProvider> = LazyLock::new(OidcProvider::default);

fuzz_target!(|claims: &[u8]| {
    PROVIDER.judge(claims);
});
