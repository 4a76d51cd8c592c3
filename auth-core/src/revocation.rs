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
    org: BTreeSet<String>,
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
            org: claims.revoked.org.into_iter().map(|e| e.id).collect(),
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

    /// Only the subject's cut-off and its organisation's suspension: for a host that settles an
    /// API key's own status elsewhere (the auth-server asks its database about a key the list
    /// names or cannot know yet).
    pub fn check_subject(&self, identity: &Identity) -> Result<(), ErrorCode> {
        if identity.org.as_deref().is_some_and(|o| self.org_suspended(o)) {
            return Err(ErrorCode::OrgSuspended);
        }
        match self.sub.get(&identity.subject) {
            Some(cutoff) if identity.issued_at.is_none_or(|iat| iat <= *cutoff) => Err(ErrorCode::SubjectRevoked),
            _ => Ok(()),
        }
    }

    /// Is `org` listed as suspended? (The auth-server asks before it signs anyone in.)
    pub fn org_suspended(&self, org: &str) -> bool {
        self.org.contains(org)
    }

    pub fn entry_count(&self) -> usize {
        self.sid.len() + self.jti.len() + self.sub.len() + self.api_key.len() + self.org.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{RevokedEntry, RevokedLists, RevokedSubject};

    fn entries(ids: &[&str]) -> Vec<RevokedEntry> {
        ids.iter().map(|id| RevokedEntry { id: id.to_string(), exp: 2_000_000_000 }).collect()
    }

    /// What `status()` reports as revoked entries: every distinct identifier of every list once
    /// (a subject listed twice counts once, with its latest cut-off).
    #[test]
    fn entries_are_counted_per_distinct_identifier_of_every_list() {
        let subject = |id: &str, iat_before: i64| RevokedSubject { id: id.into(), iat_before, exp: 2_000_000_000 };
        let claims = RevocationFeedClaims {
            iss: "https://issuer.test".into(),
            iat: 1_700_000_000,
            exp: 1_700_000_300,
            ver: 3,
            watermark: 1_699_999_990,
            revoked: RevokedLists {
                sid: entries(&["s1"]),
                jti: entries(&["j1", "j2", "j2"]),
                sub: vec![subject("u1", 10), subject("u2", 10), subject("u3", 10), subject("u1", 50)],
                api_key: entries(&["k1", "k2", "k3", "k4"]),
                org: entries(&["org-a", "org-a"]),
            },
        };
        let list = RevocationList::from_claims(claims);
        assert_eq!(list.entry_count(), 1 + 2 + 3 + 4 + 1);
        assert_eq!(RevocationList::from_claims(RevocationFeedClaims::default()).entry_count(), 0);
        // The later of u1's two cut-offs applies.
        let id = |iat: i64| Identity {
            kind: CredentialKind::Jwt,
            subject: "u1".into(),
            org: None,
            email: None,
            session_id: None,
            key_id: None,
            issuer: None,
            client_id: None,
            token_id: None,
            issued_at: Some(iat),
            expires_at: None,
            claims_b64: String::new(),
            roles_header: String::new(),
            scope_header: String::new(),
        };
        assert_eq!(list.check(&id(50), true), Err(ErrorCode::SubjectRevoked));
        assert_eq!(list.check(&id(51), true), Ok(()));
        // A suspended organisation stops every credential naming it, however new; others pass.
        let in_org = |org: &str, kind| Identity { org: Some(org.into()), kind, subject: "u9".into(), ..id(i64::MAX) };
        for kind in [CredentialKind::Jwt, CredentialKind::ApiKey] {
            assert_eq!(list.check(&in_org("org-a", kind), false), Err(ErrorCode::OrgSuspended));
            assert_eq!(list.check_subject(&in_org("org-a", kind)), Err(ErrorCode::OrgSuspended));
            assert_eq!(list.check(&in_org("org-ab", kind), false), Ok(()));
            assert_eq!(list.check(&in_org("ORG-A", kind), false), Ok(()));
        }
    }
}
