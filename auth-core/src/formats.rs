//! Wire formats shared by the auth-server (which issues them) and the gateways (which verify
//! them). One definition each; see docs/formats.md.

use serde::{Deserialize, Serialize};

use crate::objects::objects_only;

// The feed and its entries are objects (see `objects`).
objects_only!(serialize: RevocationFeedClaims, RevokedLists, RevokedEntry, RevokedSubject);

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an access token issued by the auth-server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Claims of the revocation feed (`typ: revocations+jwt`), signed with the issuer's current key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RevocationFeedClaims {
    pub iss: String,
    pub iat: i64,
    /// The feed's own staleness bound: past it, routes apply their `on_stale` policy.
    pub exp: i64,
    /// Monotonic version; a gateway never goes back to a lower one.
    pub ver: u64,
    /// Unix time up to which the feed is complete. API keys issued after it are refused until a
    /// newer feed covers them (their status is not known to this feed yet).
    pub watermark: i64,
    #[serde(default)]
    pub revoked: RevokedLists,
}

/// Revoked identifiers, each with the time after which the entry may be dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RevokedLists {
    #[serde(default)]
    pub sid: Vec<RevokedEntry>,
    #[serde(default)]
    pub jti: Vec<RevokedEntry>,
    /// Subjects: every token or API key of `id` issued at or before `iat_before` is revoked.
    #[serde(default)]
    pub sub: Vec<RevokedSubject>,
    /// API key `id` claims of revoked keys.
    #[serde(default)]
    pub api_key: Vec<RevokedEntry>,
    /// Suspended organisations: every credential whose `org` is listed is refused while it is
    /// (whenever it was issued); reinstating the organisation takes the entry out.
    #[serde(default)]
    pub org: Vec<RevokedEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RevokedEntry {
    pub id: String,
    pub exp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct RevokedSubject {
    pub id: String,
    pub iat_before: i64,
    pub exp: i64,
}
