//! A SAML 2.0 identity provider's side of the round trip, this server being the service
//! provider: the IdP's metadata imported, ours published (with the connection's own signing
//! certificate; its key sealed with the master key), the AuthnRequest signed and sent by the
//! redirect binding, and the POST binding's Response judged — its XML signature checked by libxmlsec1
//! (through samael) against the IdP's certificates, then only what that signature covers read
//! (XML signature wrapping), then the SAML rules: issuer, audience, recipient, destination,
//! `InResponseTo`, validity with clock skew, one use of each assertion across replicas.

use std::sync::Mutex;

use base64::Engine;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode};
use samael::metadata::{EntityDescriptor, HTTP_POST_BINDING, HTTP_REDIRECT_BINDING};
use samael::schema::{Assertion, Response};
use samael::traits::ToXml;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{refused, unavailable, Connection, Identity};
use crate::app::App;
use crate::crypto;
use crate::db::now;
use crate::error::ApiError;
use crate::users;

/// What a SAML connection knows of its IdP besides its entity id (the connection's `issuer`),
/// stored as JSON beside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// The IdP's single sign-on service for the HTTP-Redirect binding.
    pub sso_url: String,
    /// The IdP's signing certificates (base64 DER): any of them may sign.
    pub certificates: Vec<String>,
    #[serde(default)]
    pub email_attribute: Option<String>,
    #[serde(default)]
    pub name_attribute: Option<String>,
    #[serde(default)]
    pub roles_attribute: Option<String>,
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Our signing certificate for this connection (base64 DER), in our metadata.
    pub sp_certificate: String,
    /// Its private key (PKCS#8 DER), sealed with the master key.
    pub sp_key: String,
}

/// A SAML connection's IdP, as a new connection gives it: its metadata document, or the parts
/// by hand (given parts replace the metadata's).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewSaml {
    /// The IdP's metadata (an `EntityDescriptor` with an `IDPSSODescriptor`): its entity id,
    /// HTTP-Redirect single sign-on service and signing certificates are read from it.
    #[serde(default)]
    pub metadata: Option<String>,
    /// The IdP's single sign-on URL (HTTP-Redirect binding).
    #[serde(default)]
    pub sso_url: Option<String>,
    /// The IdP's signing certificates, PEM or base64 DER (two during a rollover).
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The attribute holding the email address (default: `email`, `mail`, the claims URI, the
    /// `mail` OID, then an email-format NameID).
    #[serde(default)]
    pub email_attribute: Option<String>,
    /// The attribute holding the display name (default: `displayName`, `name`, the claims URI).
    #[serde(default)]
    pub name_attribute: Option<String>,
    /// The attribute whose values are roles; only those in `allowed_roles` are given, and each
    /// sign-in brings the member's `allowed_roles` in line with what the IdP says.
    #[serde(default)]
    pub roles_attribute: Option<String>,
    #[serde(default)]
    pub allowed_roles: Vec<String>,
}

/// A SAML connection as its organisation's admins see it: what to enter at the IdP.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SamlInfo {
    /// Our entity id at the IdP (also where our metadata is served).
    pub sp_entity_id: String,
    /// Where the IdP posts its answer (HTTP-POST binding).
    pub acs_url: String,
    pub sso_url: String,
    /// SHA-256 fingerprints (hex) of the IdP's signing certificates.
    pub certificate_fingerprints: Vec<String>,
    pub email_attribute: Option<String>,
    pub name_attribute: Option<String>,
    pub roles_attribute: Option<String>,
    pub allowed_roles: Vec<String>,
    /// Our certificate (base64 DER) that signs our AuthnRequests, also in our metadata.
    pub sp_certificate: String,
}

/// Clock difference tolerated between the IdP and this server.
const SKEW_S: i64 = 180;
/// How old a Response or Assertion may be when it arrives.
const MAX_AGE_S: i64 = 300;
/// The largest `SAMLResponse` read (base64).
const MAX_RESPONSE: usize = 256 * 1024;
const MAX_CERTIFICATES: usize = 5;
/// What an IdP may sign with: SHA-2 RSA and ECDSA; never SHA-1.
const ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const EMAIL_ATTRIBUTES: &[&str] = &[
    "email",
    "mail",
    "emailaddress",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
];
const NAME_ATTRIBUTES: &[&str] =
    &["displayName", "name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "urn:oid:2.16.840.1.113730.3.1.241"];

/// Our entity id for a connection: the address of our metadata for it.
pub fn sp_entity_id(app: &App, connection: &str) -> String {
    format!("{}/saml/{connection}/metadata", app.cfg.public_url.trim_end_matches('/'))
}

/// Where the IdP posts its answer for a connection.
pub fn acs_url(app: &App, connection: &str) -> String {
    format!("{}/saml/{connection}/acs", app.cfg.public_url.trim_end_matches('/'))
}

pub(super) fn info(app: &App, conn_id: &str, sp_entity_id: &str, s: &Settings) -> SamlInfo {
    SamlInfo {
        sp_entity_id: sp_entity_id.to_string(),
        acs_url: acs_url(app, conn_id),
        sso_url: s.sso_url.clone(),
        certificate_fingerprints: s
            .certificates
            .iter()
            .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .map(|der| crypto::sha256_hex(&der))
            .collect(),
        email_attribute: s.email_attribute.clone(),
        name_attribute: s.name_attribute.clone(),
        roles_attribute: s.roles_attribute.clone(),
        allowed_roles: s.allowed_roles.clone(),
        sp_certificate: s.sp_certificate.clone(),
    }
}

fn key_context(connection: &str) -> String {
    format!("saml-sp-key:{connection}")
}

/// A signing key for a new connection: RSA 2048 and a self-signed certificate (IdPs pin the
/// certificate; its dates are not what they check). Returns (certificate, sealed key).
fn new_sp_key(app: &App, connection: &str) -> Result<(String, String), openssl::error::ErrorStack> {
    use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = x509::X509NameBuilder::new()?;
    name.append_entry_by_text("CN", &format!("authgate SAML SP {connection}"))?;
    let name = name.build();
    let mut cert = x509::X509Builder::new()?;
    cert.set_version(2)?;
    let serial = BigNum::from_slice(&crypto::random_bytes(16))?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::from_unix(now() - 86_400)?, Asn1Time::days_from_now(3650)?);
    cert.set_not_before(&from)?;
    cert.set_not_after(&until)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let der = cert.build().to_der()?;
    let sealed = app.master.seal(&key.private_key_to_pkcs8()?, &key_context(connection));
    Ok((base64::engine::general_purpose::STANDARD.encode(der), sealed))
}

/// A certificate as PEM or base64 DER → base64 DER, checked to be an X.509 certificate with an
/// RSA or EC key.
fn certificate(text: &str) -> Result<String, &'static str> {
    let bad = "saml.certificates: each an X.509 certificate (PEM or base64 DER) with an RSA or EC key";
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(&body).map_err(|_| bad)?;
    let cert = openssl::x509::X509::from_der(&der).map_err(|_| bad)?;
    let key = cert.public_key().map_err(|_| bad)?;
    if key.rsa().is_err() && key.ec_key().is_err() {
        return Err(bad);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(der))
}

fn valid_attribute(a: &Option<String>) -> bool {
    a.as_deref().is_none_or(|a| !a.is_empty() && a.len() <= 200 && !a.chars().any(char::is_control))
}

/// The IdP's entity id and settings from what a new connection gives (metadata and/or parts).
/// `issuer`, when given, is the IdP's entity id. The error names the field.
/// (Without our key: `with_new_key` or the connection's own.)
pub(super) fn settings(app: &App, new: NewSaml, issuer: Option<&str>) -> Result<(String, Settings), ApiError> {
    idp_settings(new, issuer, app.cfg.federation.allow_http).map_err(|m| ApiError::bad_request("invalid_connection", m))
}

/// `settings` with a new key of ours for `connection`.
pub(super) fn with_new_key(app: &App, connection: &str, settings: Settings) -> Result<Settings, ApiError> {
    let (sp_certificate, sp_key) = new_sp_key(app, connection).map_err(|e| ApiError::internal(format!("SAML SP key: {e}")))?;
    Ok(Settings { sp_certificate, sp_key, ..settings })
}

fn idp_settings(new: NewSaml, issuer: Option<&str>, allow_http: bool) -> Result<(String, Settings), &'static str> {
    let mut entity_id = None;
    let mut sso_url = None;
    let mut certs = Vec::new();
    if let Some(xml) = new.metadata.as_deref() {
        if xml.len() > 512 * 1024 || has_doctype(xml) {
            return Err("saml.metadata: at most 512 KiB, no DOCTYPE");
        }
        let md: EntityDescriptor = xml.parse().map_err(|_| "saml.metadata: not a SAML EntityDescriptor")?;
        let idp = md.idp_sso_descriptors.as_ref().and_then(|d| d.first()).ok_or("saml.metadata: it has no IDPSSODescriptor")?;
        entity_id = md.entity_id.clone();
        sso_url = idp.single_sign_on_services.iter().find(|s| s.binding == HTTP_REDIRECT_BINDING).map(|s| s.location.clone());
        for kd in &idp.key_descriptors {
            if kd.key_use.as_deref().is_none_or(|u| u.is_empty() || u == "signing") {
                for c in kd.key_info.x509_data.iter().flat_map(|x| x.certificates.iter()) {
                    certs.push(c.clone());
                }
            }
        }
    }
    let entity_id = issuer.map(str::to_string).or(entity_id).ok_or("issuer: the IdP's entity id (or saml.metadata naming it)")?;
    if entity_id.is_empty() || entity_id.len() > 500 || entity_id.chars().any(char::is_control) {
        return Err("issuer: the IdP's entity id, 1 to 500 characters");
    }
    let sso_url = new.sso_url.or(sso_url).ok_or("saml.sso_url: the IdP's HTTP-Redirect single sign-on URL (or saml.metadata with one)")?;
    let parsed = url::Url::parse(&sso_url).map_err(|_| "saml.sso_url: not a URL")?;
    let scheme_ok = parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http");
    if !scheme_ok || parsed.fragment().is_some() || !parsed.username().is_empty() || sso_url.len() > 1000 {
        return Err("saml.sso_url: an https URL without credentials or fragment (federation.allow_http permits http)");
    }
    if !new.certificates.is_empty() {
        certs = new.certificates;
    }
    if certs.is_empty() || certs.len() > MAX_CERTIFICATES {
        return Err("saml.certificates: 1 to 5 signing certificates of the IdP (or saml.metadata with them)");
    }
    let certificates = certs.iter().map(|c| certificate(c)).collect::<Result<Vec<_>, _>>()?;
    for a in [&new.email_attribute, &new.name_attribute, &new.roles_attribute] {
        if !valid_attribute(a) {
            return Err("saml.*_attribute: 1 to 200 characters");
        }
    }
    if new.allowed_roles.len() > 50 || !new.allowed_roles.iter().all(|r| users::valid_role(r)) {
        return Err("saml.allowed_roles: at most 50 roles");
    }
    if !new.allowed_roles.is_empty() && new.roles_attribute.is_none() {
        return Err("saml.allowed_roles: only with saml.roles_attribute");
    }
    let mut allowed_roles = new.allowed_roles;
    allowed_roles.sort();
    allowed_roles.dedup();
    let settings = Settings {
        sso_url,
        certificates,
        email_attribute: new.email_attribute,
        name_attribute: new.name_attribute,
        roles_attribute: new.roles_attribute,
        allowed_roles,
        sp_certificate: String::new(),
        sp_key: String::new(),
    };
    Ok((entity_id, settings))
}

fn has_doctype(xml: &str) -> bool {
    xml.contains("<!DOCTYPE") || xml.contains("<!doctype") || xml.contains("<!ENTITY")
}

/// Our metadata for a connection: entity id, our signing certificate, the ACS (HTTP-POST),
/// signed requests, signed assertions wanted.
pub fn metadata(app: &App, conn: &Connection, settings: &Settings) -> Result<String, ApiError> {
    let entity_id = conn.info.client_id.clone();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{}\">\
         <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\" \
         protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         <md:KeyDescriptor use=\"signing\"><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
         <ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\
         <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\
         <md:NameIDFormat>{NAMEID_EMAIL}</md:NameIDFormat>\
         <md:AssertionConsumerService Binding=\"{HTTP_POST_BINDING}\" Location=\"{}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>\n",
        xml_attr(&entity_id),
        xml_attr(&settings.sp_certificate),
        xml_attr(&acs_url(app, &conn.info.id)),
    );
    Ok(xml)
}

/// Text for a double-quoted XML attribute.
fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The IdP's address with our AuthnRequest (HTTP-Redirect binding: deflated, base64, in the
/// query), `relay_state` and our signature over both (RSA-SHA256, the binding's `SigAlg` and
/// `Signature`); and the request's id, which the answer must name.
pub(super) fn redirect(app: &App, conn: &Connection, settings: &Settings, relay_state: &str) -> Result<(String, String), ApiError> {
    let id = format!("_{}", hex::encode(crypto::random_bytes(20)));
    let request = samael::schema::AuthnRequest {
        id: id.clone(),
        version: "2.0".into(),
        issue_instant: chrono_now(),
        destination: Some(settings.sso_url.clone()),
        issuer: Some(samael::schema::Issuer { value: Some(conn.info.client_id.clone()), ..Default::default() }),
        assertion_consumer_service_url: Some(acs_url(app, &conn.info.id)),
        protocol_binding: Some(HTTP_POST_BINDING.into()),
        ..Default::default()
    };
    let xml = request.to_string().map_err(|e| ApiError::internal(format!("AuthnRequest: {e}")))?;
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflated, xml.as_bytes()).map_err(|e| ApiError::internal(format!("deflate: {e}")))?;
    let deflated = deflated.finish().map_err(|e| ApiError::internal(format!("deflate: {e}")))?;
    let url = url::Url::parse(&settings.sso_url).map_err(unavailable)?;
    // The signature covers the parameters exactly as encoded in the query (SAML bindings §3.4.4.1).
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let signed = format!(
        "SAMLRequest={}&RelayState={}&SigAlg={}",
        enc(&base64::engine::general_purpose::STANDARD.encode(deflated)),
        enc(relay_state),
        enc(RSA_SHA256)
    );
    let sealed =
        app.master.open(&settings.sp_key, &key_context(&conn.info.id)).map_err(|e| ApiError::internal(format!("SAML SP key: {e}")))?;
    let signature = sign(&sealed, signed.as_bytes()).map_err(|e| ApiError::internal(format!("SAML request signature: {e}")))?;
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{signed}&Signature={}", enc(&signature)),
        _ => format!("{signed}&Signature={}", enc(&signature)),
    };
    let mut url = url;
    url.set_query(Some(&query));
    Ok((url.to_string(), id))
}

const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// RSA-SHA256 (PKCS#1 v1.5) of `data` with a PKCS#8 key, base64.
fn sign(pkcs8: &[u8], data: &[u8]) -> Result<String, openssl::error::ErrorStack> {
    let key = openssl::pkey::PKey::private_key_from_pkcs8(pkcs8)?;
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
    signer.update(data)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signer.sign_to_vec()?))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(now(), 0).unwrap_or_default()
}

/// The IdP's answer (`SAMLResponse`, base64) to the request `request_id`: who it says the
/// person is, once the signature, the SAML rules and the replay cache all agree.
pub(super) async fn identity(
    app: &App,
    conn: &Connection,
    settings: &Settings,
    response: &str,
    request_id: &str,
) -> Result<Identity, ApiError> {
    let xml = unsigned_xml(response)?;
    let certs = certificates(settings);
    let signed = tokio::task::spawn_blocking(move || signed_content(&xml, &certs))
        .await
        .map_err(|e| ApiError::internal(format!("saml verification task: {e}")))?;
    let signed = signed.map_err(|why| {
        tracing::info!(connection = %conn.info.id, why, "SAML response signature refused");
        refused("saml_signature_invalid", "the identity provider's answer is not signed by its certificate")
    })?;
    let judge = Judge { now: now(), idp: &conn.info.issuer, sp: &conn.info.client_id, acs: acs_url(app, &conn.info.id), request_id };
    let (assertion, subject, not_on_or_after) = judge.signed(&signed)?;
    // Each assertion is taken once, by every replica alike (the ephemeral store).
    let ttl = (not_on_or_after + SKEW_S - judge.now).clamp(60, 86_400);
    let seen = format!("saml:seen:{}:{}", conn.info.id, crypto::sha256_hex(assertion.id.as_bytes()));
    if app.eph.incr(&seen, ttl).await?.0 > 1 {
        return Err(refused("saml_replayed", "this answer of the identity provider was used before"));
    }
    Ok(read_identity(&assertion, subject, settings))
}

fn malformed() -> ApiError {
    refused("saml_response_invalid", "the identity provider's answer is not a SAML response this server accepts")
}

/// The answer's XML, before anything trusts it: base64 of UTF-8 within [`MAX_RESPONSE`], no
/// DTD, one well-formed document with one assertion in the clear.
pub(super) fn unsigned_xml(response: &str) -> Result<String, ApiError> {
    let b64: String = response.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if b64.is_empty() || b64.len() > MAX_RESPONSE {
        return Err(malformed());
    }
    let xml = base64::engine::general_purpose::STANDARD.decode(&b64).map_err(|_| malformed())?;
    let xml = String::from_utf8(xml).map_err(|_| malformed())?;
    // No DTDs: no entity expansion, no external entities.
    if has_doctype(&xml) {
        return Err(malformed());
    }
    // One assertion, in the clear: a second one beside or around the signed one is how
    // signature wrapping starts, whatever the signature check then makes of it. No comments or
    // CDATA in the document: they split a text node, and a reader keeping only its first part
    // would read another NameID than the one signed (C14N drops comments: the signature holds).
    match shape(&xml) {
        Some(Shape { encrypted: 0, assertions: 1, split_text: 0, .. }) => Ok(xml),
        Some(Shape { encrypted: 1.., .. }) => {
            Err(refused("saml_response_invalid", "encrypted assertions are not supported: ask the IdP for signed, unencrypted ones"))
        }
        _ => Err(malformed()),
    }
}

/// The IdP's signing certificates (DER) from the connection's settings.
pub(super) fn certificates(settings: &Settings) -> Vec<CertificateDer> {
    settings
        .certificates
        .iter()
        .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .map(CertificateDer::from)
        .collect()
}

/// libxml2 and libxmlsec1 keep process-wide state: one verification at a time.
static XMLSEC: Mutex<()> = Mutex::new(());

/// What of `xml` a signature by one of `certs` covers, or why nothing is: every signature in it
/// checked by libxmlsec1 (through samael), then the pre-digest content of the one that counts —
/// the bytes the digest was computed over (exclusive C14N of the signed element), the Response's
/// when both it and its assertion are signed. Blocking.
///
/// Pre-digest, not samael's reduction of the document to the signed element: that reduction
/// leaks the unsigned rest of the document (libxml2 nodes left unlinked, never freed) whenever
/// the assertion alone is signed — found by the `saml` fuzz target; anyone holding one signed
/// assertion could post it wrapped in a large unsigned Response again and again.
pub(super) fn signed_content(xml: &str, certs: &[CertificateDer]) -> Result<String, String> {
    let _one = XMLSEC.lock().unwrap_or_else(|p| p.into_inner());
    Crypto::reduce_xml_to_signed_with_allowed_algorithms(xml, certs, ReduceMode::PreDigest, Some(ALLOWED)).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Response,
    Assertion,
    Other,
}

/// What a document is made of, by namespace: its root, and how many assertions it holds.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    root: Root,
    assertions: usize,
    encrypted: usize,
    /// Comments and CDATA sections inside the document element.
    split_text: usize,
}

const SAMLP_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
const SAML_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";

/// None: not well-formed XML.
fn shape(xml: &str) -> Option<Shape> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut shape = Shape { root: Root::Other, assertions: 0, encrypted: 0, split_text: 0 };
    let mut seen_root = false;
    let mut depth = 0usize;
    loop {
        let (ns, event) = reader.read_resolved_event().ok()?;
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                continue;
            }
            Event::Eof => return (seen_root && depth == 0).then_some(shape),
            Event::Comment(_) | Event::CData(_) if depth > 0 => {
                shape.split_text += 1;
                continue;
            }
            _ => continue,
        };
        let ns: &[u8] = match ns {
            ResolveResult::Bound(n) => n.into_inner(),
            _ => b"",
        };
        let local = start.local_name();
        let is = |want_ns: &[u8], name: &[u8]| ns == want_ns && local.as_ref() == name;
        if !seen_root {
            seen_root = true;
            shape.root = if is(SAMLP_NS, b"Response") {
                Root::Response
            } else if is(SAML_NS, b"Assertion") {
                Root::Assertion
            } else {
                Root::Other
            };
        } else if depth == 0 {
            return None; // a second document element
        }
        if is(SAML_NS, b"Assertion") {
            shape.assertions += 1;
        } else if is(SAML_NS, b"EncryptedAssertion") {
            shape.encrypted += 1;
        }
        if !empty {
            depth += 1;
        }
    }
}

/// The SAML rules for one answer.
pub(super) struct Judge<'a> {
    pub now: i64,
    pub idp: &'a str,
    pub sp: &'a str,
    pub acs: String,
    pub request_id: &'a str,
}

impl Judge<'_> {
    /// The signed content of an answer (what [`signed_content`] returned) read and judged: its
    /// assertion, the NameID and the time the assertion stops being valid.
    pub(super) fn signed(&self, signed: &str) -> Result<(Assertion, String, i64), ApiError> {
        // Only signed content from here on; comments survive C14N #WithComments.
        if signed.contains("<!--") || signed.contains("<![CDATA[") || has_doctype(signed) {
            return Err(malformed());
        }
        let assertion = match shape(signed).map(|s| s.root) {
            Some(Root::Response) => {
                let r: Response = signed.parse().map_err(|_| malformed())?;
                self.response(&r)?;
                r.assertion.ok_or_else(malformed)?
            }
            Some(Root::Assertion) => signed.parse::<Assertion>().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        let (subject, until) = self.assertion(&assertion)?;
        Ok((assertion, subject, until))
    }

    fn fresh(&self, issued: i64) -> bool {
        issued <= self.now + SKEW_S && issued >= self.now - MAX_AGE_S - SKEW_S
    }

    /// A signed Response: ours (destination, in response to our request), from the IdP, a
    /// success, fresh, with its one plain assertion.
    fn response(&self, r: &Response) -> Result<(), ApiError> {
        if r.destination.as_deref() != Some(self.acs.as_str()) {
            return Err(refused("saml_destination_invalid", "the identity provider's answer is for another address"));
        }
        if r.in_response_to.as_deref() != Some(self.request_id) {
            return Err(refused("saml_in_response_to_invalid", "the identity provider's answer is not to this sign-in's request"));
        }
        if r.issuer.as_ref().is_some_and(|i| i.value.as_deref() != Some(self.idp)) {
            return Err(refused("saml_issuer_invalid", "the answer is from another identity provider"));
        }
        if r.status.as_ref().and_then(|s| s.status_code.value.as_deref()) != Some(STATUS_SUCCESS) {
            return Err(refused("sso_failed", "the identity provider did not sign you in"));
        }
        if r.version != "2.0" || !self.fresh(r.issue_instant.timestamp()) {
            return Err(refused("saml_expired", "the identity provider's answer is too old or from the future"));
        }
        Ok(())
    }

    /// A signed Assertion for us: from the IdP, within its conditions, our audience, a bearer
    /// confirmation to our ACS in response to our request. Returns its NameID and the time it
    /// stops being valid.
    fn assertion(&self, a: &Assertion) -> Result<(String, i64), ApiError> {
        if a.issuer.value.as_deref() != Some(self.idp) {
            return Err(refused("saml_issuer_invalid", "the assertion is from another identity provider"));
        }
        let expired = || refused("saml_expired", "the identity provider's assertion is expired or not yet valid");
        if a.version != "2.0" || !self.fresh(a.issue_instant.timestamp()) {
            return Err(expired());
        }
        let conditions = a.conditions.as_ref().ok_or_else(|| refused("saml_audience_invalid", "the assertion names no audience"))?;
        if conditions.not_before.is_some_and(|t| t.timestamp() > self.now + SKEW_S) {
            return Err(expired());
        }
        if conditions.not_on_or_after.is_some_and(|t| t.timestamp() + SKEW_S <= self.now) {
            return Err(expired());
        }
        // Every AudienceRestriction must name us (each is satisfied by any one of its audiences).
        let restrictions = conditions.audience_restrictions.as_deref().unwrap_or_default();
        if restrictions.is_empty() || !restrictions.iter().all(|r| r.audience.iter().any(|x| x == self.sp)) {
            return Err(refused("saml_audience_invalid", "the assertion is for another service provider"));
        }
        let subject = a.subject.as_ref().ok_or_else(|| refused("saml_subject_invalid", "the assertion names nobody"))?;
        let mut confirmed = None;
        for c in subject.subject_confirmations.iter().flatten().filter(|c| c.method.as_deref() == Some(BEARER)) {
            let Some(d) = c.subject_confirmation_data.as_ref() else { continue };
            let until = d.not_on_or_after.map(|t| t.timestamp());
            let ok = d.recipient.as_deref() == Some(self.acs.as_str())
                && d.in_response_to.as_deref() == Some(self.request_id)
                && until.is_some_and(|t| t + SKEW_S > self.now)
                && d.not_before.is_none_or(|t| t.timestamp() <= self.now + SKEW_S);
            if ok {
                confirmed = until;
                break;
            }
        }
        let until = confirmed.ok_or_else(|| {
            refused(
                "saml_confirmation_invalid",
                "the assertion is not confirmed for this service provider's address and request, or has expired",
            )
        })?;
        let name_id = subject.name_id.as_ref().ok_or_else(|| refused("saml_subject_invalid", "the assertion has no NameID"))?;
        if name_id.format.as_deref() == Some(NAMEID_TRANSIENT) {
            return Err(refused("saml_subject_invalid", "a transient NameID names nobody twice: configure a persistent or email NameID"));
        }
        let value = name_id.value.trim();
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(refused("saml_subject_invalid", "the assertion's NameID is empty, too long or has control characters"));
        }
        let until = conditions.not_on_or_after.map(|t| t.timestamp()).map_or(until, |c| c.min(until));
        Ok((value.to_string(), until))
    }
}

/// The values of the first attribute named `names` (by Name or FriendlyName).
fn attribute<'a>(a: &'a Assertion, names: &[&str]) -> Vec<&'a str> {
    for name in names {
        for statement in a.attribute_statements.iter().flatten() {
            for attr in &statement.attributes {
                if attr.name.as_deref() == Some(name) || attr.friendly_name.as_deref() == Some(name) {
                    return attr.values.iter().filter_map(|v| v.value.as_deref()).map(str::trim).filter(|v| !v.is_empty()).collect();
                }
            }
        }
    }
    Vec::new()
}

/// The person the assertion names: NameID as subject, email, name and roles by the mapping. A
/// SAML IdP is the organisation's own: its addresses count only in the organisation's domains
/// (accounts.rs), so none is called verified here.
pub(super) fn read_identity(a: &Assertion, subject: String, s: &Settings) -> Identity {
    let email_names: Vec<&str> = s.email_attribute.as_deref().map_or_else(|| EMAIL_ATTRIBUTES.to_vec(), |n| vec![n]);
    let name_id_email = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| n.format.as_deref() == Some(NAMEID_EMAIL))
        .map(|n| n.value.trim().to_string());
    let email = attribute(a, &email_names).first().map(|e| e.to_string()).or(name_id_email).and_then(|e| users::normalize_email(&e));
    let name_names: Vec<&str> = s.name_attribute.as_deref().map_or_else(|| NAME_ATTRIBUTES.to_vec(), |n| vec![n]);
    let name = attribute(a, &name_names).first().map(|n| n.to_string()).filter(|n| users::valid_name(n));
    let roles = s.roles_attribute.as_deref().map(|attr| {
        let mut r: Vec<String> =
            attribute(a, &[attr]).into_iter().filter(|v| s.allowed_roles.iter().any(|a| a == v)).map(str::to_string).collect();
        r.sort();
        r.dedup();
        r
    });
    Identity { subject, email, email_verified: false, name, roles }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use samael::crypto::CertificateDer;

    use super::{shape, signed_content, unsigned_xml, Judge, Root, Shape};

    const P: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
    const A: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

    #[test]
    fn shape_goes_by_namespace_not_by_prefix() {
        let response = format!("<?xml version=\"1.0\"?>\n<p:Response xmlns:p=\"{P}\" xmlns:a=\"{A}\"><a:Assertion/></p:Response>");
        assert_eq!(shape(&response), Some(Shape { root: Root::Response, assertions: 1, encrypted: 0, split_text: 0 }));
        // The right local name in another namespace is not an assertion.
        let decoy =
            format!("<Response xmlns=\"{P}\"><Assertion xmlns=\"urn:evil\"/><x:Assertion xmlns:x=\"{A}\"></x:Assertion></Response>");
        assert_eq!(shape(&decoy), Some(Shape { root: Root::Response, assertions: 1, encrypted: 0, split_text: 0 }));
        let two = format!("<Assertion xmlns=\"{A}\"><Advice><Assertion/></Advice><EncryptedAssertion/></Assertion>");
        assert_eq!(shape(&two), Some(Shape { root: Root::Assertion, assertions: 2, encrypted: 1, split_text: 0 }));
        // Comments and CDATA inside the document element are counted; a comment before it is not.
        let split = format!("<!-- IdP --><Assertion xmlns=\"{A}\"><NameID>a<!---->b</NameID><X><![CDATA[c]]></X></Assertion>");
        assert_eq!(shape(&split), Some(Shape { root: Root::Assertion, assertions: 1, encrypted: 0, split_text: 2 }));
        assert_eq!(shape("<Response/>").map(|s| s.root), Some(Root::Other));
    }

    /// The fuzz target's signed answers (auth-server/fuzz/make_seeds.py: signxml, a fixed clock):
    /// signed on the assertion, the response or both, each judged to the same person; unsigned,
    /// or for another audience, refused.
    #[test]
    fn signed_answers_are_read_from_what_the_signature_covers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let cert = std::fs::read_to_string(dir.join("fixtures/saml-idp-cert.b64")).unwrap();
        let certs = [CertificateDer::from(base64::engine::general_purpose::STANDARD.decode(cert.trim()).unwrap())];
        let judge = Judge {
            now: 1_800_000_000,
            idp: "https://idp.example/saml",
            sp: "https://auth.example/saml/conn/metadata",
            acs: "https://auth.example/saml/conn/acs".into(),
            request_id: "_request",
        };
        let read = |name: &str| {
            let xml = std::fs::read(dir.join("seeds/saml").join(name)).unwrap();
            let xml = unsigned_xml(&base64::engine::general_purpose::STANDARD.encode(xml)).map_err(|e| e.code.to_string())?;
            let signed = signed_content(&xml, &certs)?;
            judge.signed(&signed).map(|(_, subject, until)| (subject, until)).map_err(|e| e.code.to_string())
        };
        for name in ["signed-assertion.xml", "signed-response.xml", "signed-both.xml"] {
            assert_eq!(read(name), Ok(("person-1".to_string(), 1_800_000_300)), "{name}");
        }
        assert!(read("signed-none.xml").is_err());
        assert_eq!(read("other-audience.xml"), Err("saml_audience_invalid".to_string()));
        assert_eq!(read("transient.xml"), Err("saml_subject_invalid".to_string()));
        // Past the assertion's NotOnOrAfter (and the skew).
        assert_eq!(read("expired.xml"), Err("saml_expired".to_string()));
    }

    #[test]
    fn shape_refuses_what_is_not_one_well_formed_document() {
        for bad in ["", "no element", "<a>", "<a></b>", "<a/><b/>", "<a></a></a>"] {
            assert_eq!(shape(bad), None, "{bad}");
        }
    }
}
