//! The applied revocation feed: answers "is this credential revoked". The gateways build it from
//! the signed feed; the auth-server from its own snapshot ([`RevocationList::from_claims`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::CredentialKind;
use crate::decision::Identity;
use crate::error::ErrorCode;
use crate::formats::RevocationFeedClaims;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    pub ver: u64,
    pub iat: i64,
    pub exp: i64,
    pub watermark: i64,
    sid: BTreeSet<String>,
    jti: BTreeSet<String>,
    sub: BTreeMap<String, i64>,
    api_key: BTreeSet<String>,
}

impl RevocationList {
    pub fn from_claims(claims: RevocationFeedClaims) -> RevocationList {
        let mut sub = BTreeMap::new();
        for s in claims.revoked.sub {
            // Several entries for one subject: the latest cut-off wins.
            let e = sub.entry(s.id).or_insert(i64::MIN);
            *e = (*e).max(s.iat_before);
        }
        RevocationList {
            ver: claims.ver,
            iat: claims.iat,
            exp: claims.exp,
            watermark: claims.watermark,
            sid: claims.revoked.sid.into_iter().map(|e| e.id).collect(),
            jti: claims.revoked.jti.into_iter().map(|e| e.id).collect(),
            sub,
            api_key: claims.revoked.api_key.into_iter().map(|e| e.id).collect(),
        }
    }

    /// Whether `identity` is revoked: its token id, session or API key listed, or its subject cut
    /// off at or after its `iat` (a credential without `iat` cannot prove it is newer). An API key
    /// issued after the watermark is `api_key_pending` (the list cannot know it yet) unless
    /// `watermark_applies` is false (a stale feed on a fail-open route: what was revoked stays
    /// revoked, nothing more can be said).
    pub fn check(&self, identity: &Identity, watermark_applies: bool) -> Result<(), ErrorCode> {
        match identity.kind {
            CredentialKind::Jwt => {
                if identity.token_id.as_deref().is_some_and(|j| self.jti.contains(j)) {
                    return Err(ErrorCode::TokenRevoked);
                }
                if identity.session_id.as_deref().is_some_and(|s| self.sid.contains(s)) {
                    return Err(ErrorCode::SessionRevoked);
                }
            }
            CredentialKind::ApiKey => {
                if identity.key_id.as_deref().is_some_and(|k| self.api_key.contains(k)) {
                    return Err(ErrorCode::ApiKeyRevoked);
                }
                if watermark_applies && identity.issued_at.is_some_and(|iat| iat > self.watermark) {
                    return Err(ErrorCode::ApiKeyPending);
                }
            }
        }
        self.check_subject(identity)
    }

    /// Only the subject's cut-off: for a host that settles an API key's own status elsewhere
    /// (the auth-server asks its database about a key the list names or cannot know yet).
    pub fn check_subject(&self, identity: &Identity) -> Result<(), ErrorCode> {
        match self.sub.get(&identity.subject) {
            Some(cutoff) if identity.issued_at.map_or(true, |iat| iat <= *cutoff) => Err(ErrorCode::SubjectRevoked),
            _ => Ok(()),
        }
    }

    pub fn entry_count(&self) -> usize {
        self.sid.len() + self.jti.len() + self.sub.len() + self.api_key.len()
    }
}
