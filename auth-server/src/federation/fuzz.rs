//! What the fuzz targets feed the federation: a SAML answer through every step the ACS takes,
//! an ID token's claims through the OpenID Connect checks and each preset's reading of them.
//! Only with `--cfg fuzzing` (and for tests); the fixtures are those of
//! auth-server/fuzz/make_seeds.py, which made the seeds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use super::oidc::{identity_of, verify_id_token, Refused};
use super::saml::{self, Judge, Settings};
use super::{ConnectionInfo, Kind, MICROSOFT_CONSUMERS_TENANT};

/// Who a fuzzed SAML answer is judged for, and the IdP certificate (base64 DER) that signs.
pub struct SamlParties<'a> {
    pub now: i64,
    pub idp: &'a str,
    pub sp: &'a str,
    pub acs: &'a str,
    pub request_id: &'a str,
    pub idp_certificate: &'a str,
}

impl SamlParties<'static> {
    /// The parties, clock and IdP certificate the seeds were made for.
    pub fn fixture() -> Self {
        SamlParties {
            now: 1_800_000_000,
            idp: "https://idp.example/saml",
            sp: "https://auth.example/saml/conn/metadata",
            acs: "https://auth.example/saml/conn/acs",
            request_id: "_request",
            idp_certificate: include_str!("../../fuzz/fixtures/saml-idp-cert.b64").trim(),
        }
    }
}

/// `xml` as the IdP's POST would carry it (base64), through the ACS's steps: the checks before
/// anything is trusted, the XML signature (libxmlsec1) against the IdP's certificate, the SAML
/// rules on what it covers, the identity read from it. Then `xml` again as if a signature covered
/// all of it, so the rules and the reading meet documents no fuzzer could sign. An accepted
/// answer must name a subject the rules allow and only roles the connection allows. Returns how
/// many of the two readings accepted it.
pub fn saml_response(xml: &[u8], parties: &SamlParties) -> usize {
    let settings = Settings {
        sso_url: String::new(),
        certificates: vec![parties.idp_certificate.to_string()],
        email_attribute: None,
        name_attribute: None,
        roles_attribute: Some("groups".into()),
        allowed_roles: vec!["admin".into(), "viewer".into()],
        sp_certificate: String::new(),
        sp_key: String::new(),
    };
    let judge = Judge { now: parties.now, idp: parties.idp, sp: parties.sp, acs: parties.acs.to_string(), request_id: parties.request_id };
    let accept = |signed: &str| {
        let Ok((assertion, subject, until)) = judge.signed(signed) else { return 0 };
        {
            assert!(until + 180 > judge.now, "an expired assertion was accepted");
            let identity = saml::read_identity(&assertion, subject, &settings);
            let s = &identity.subject;
            assert!(!s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control), "NameID {s:?}");
            let roles = identity.roles.unwrap_or_default();
            assert!(roles.iter().all(|r| settings.allowed_roles.contains(r)), "roles {roles:?}");
            assert!(!identity.email_verified, "a SAML IdP's address is never verified by the IdP's say-so");
        }
        1
    };
    let mut accepted = 0;
    let posted = base64::engine::general_purpose::STANDARD.encode(xml);
    if let Ok(unsigned) = saml::unsigned_xml(&posted) {
        if let Ok(signed) = saml::signed_content(&unsigned, &saml::certificates(&settings)) {
            accepted += accept(&signed);
        }
    }
    if let Ok(text) = std::str::from_utf8(xml) {
        accepted += accept(text);
    }
    accepted
}

/// The claims an OpenID Connect provider's ID token carries: the provider's keys and the
/// token's signing are the caller's (`sign` turns claims into a compact JWS its `jwks` verifies).
pub struct OidcParties<'a> {
    pub now: i64,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub jwks: &'a Value,
}

/// The provider the seeds were made for: its Ed25519 key and JWKS, and the clock, client and
/// nonce of the round trip.
pub struct OidcProvider {
    key: SigningKey,
    jwks: Value,
}

impl Default for OidcProvider {
    fn default() -> Self {
        let key = SigningKey::from_bytes(&[7; 32]);
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "fuzz", "x": B64.encode(key.verifying_key().as_bytes())}]});
        OidcProvider { key, jwks }
    }
}

impl OidcProvider {
    /// An ID token with `claims` (any bytes) as its payload, signed by this provider.
    pub fn sign(&self, claims: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(br#"{"alg":"EdDSA","kid":"fuzz","typ":"JWT"}"#), B64.encode(claims));
        format!("{input}.{}", B64.encode(self.key.sign(input.as_bytes()).to_bytes()))
    }

    /// [`oidc_id_token`] for `claims` signed by this provider, at the seeds' clock, client and nonce.
    pub fn judge(&self, claims: &[u8]) -> Vec<Kind> {
        let parties = OidcParties { now: 1_800_000_000, client_id: "client-1", nonce: "n0nce-of-this-round-trip", jwks: &self.jwks };
        oidc_id_token(claims, |c| self.sign(c), &parties)
    }
}

/// `claims` (any bytes, as a token's payload) signed by the provider and judged by each kind of
/// connection — a generic provider, Google, Microsoft personal accounts, Entra ID with two
/// tenants — and read as that preset reads them. Accepted claims must carry this round trip's
/// nonce; an Entra ID subject must be one of the allowed tenants'; a Microsoft address counts
/// as verified only from the consumers tenant. Returns the kinds of connection that took the
/// person in.
pub fn oidc_id_token(claims: &[u8], sign: impl Fn(&[u8]) -> String, parties: &OidcParties) -> Vec<Kind> {
    let mut accepted = Vec::new();
    let token = sign(claims);
    let tenants = ["tenant-a".to_string(), "tenant-b".to_string()];
    let connections = [
        (Kind::Oidc, "https://idp.example".to_string()),
        (Kind::Google, "https://accounts.google.com".to_string()),
        (Kind::Microsoft, format!("https://login.microsoftonline.com/{MICROSOFT_CONSUMERS_TENANT}/v2.0")),
        (Kind::Entra, "https://login.microsoftonline.com/organizations/v2.0".to_string()),
    ];
    for (kind, issuer) in connections {
        let conn = ConnectionInfo {
            id: "conn".into(),
            org_id: "org".into(),
            kind,
            name: kind.as_str().into(),
            issuer,
            client_id: parties.client_id.into(),
            has_client_secret: true,
            scopes: "openid email profile".into(),
            tenants: tenants.to_vec(),
            create_accounts: false,
            roles: Vec::new(),
            created_at: 0,
            saml: None,
        };
        let claims = match verify_id_token(&conn, parties.jwks, &token, parties.nonce, parties.now) {
            Ok(claims) => claims,
            Err(Refused::UnknownKey | Refused::Because(_)) => continue,
        };
        assert_eq!(claims.get("nonce"), Some(&json!(parties.nonce)), "a token without this round trip's nonce was accepted");
        if let Ok(identity) = identity_of(&conn, &claims) {
            if kind == Kind::Entra {
                let tenant = identity.subject.split('/').next().unwrap_or_default();
                assert!(tenants.iter().any(|t| t == tenant), "Entra ID subject {:?}", identity.subject);
            }
            if kind == Kind::Microsoft && identity.email_verified {
                assert_eq!(claims.get("tid"), Some(&json!(MICROSOFT_CONSUMERS_TENANT)), "a work account's address counted as verified");
            }
            accepted.push(kind);
        }
    }
    accepted
}
