//! The applied revocation feed: answers "is this credential revoked".

use std::collections::{BTreeMap, BTreeSet};

use crate::formats::RevocationFeedClaims;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationState {
    pub ver: u64,
    pub iat: i64,
    pub exp: i64,
    pub watermark: i64,
    sid: BTreeSet<String>,
    jti: BTreeSet<String>,
    sub: BTreeMap<String, i64>,
    api_key: BTreeSet<String>,
}

impl RevocationState {
    pub(crate) fn from_claims(claims: RevocationFeedClaims) -> RevocationState {
        let mut sub = BTreeMap::new();
        for s in claims.revoked.sub {
            // Several entries for one subject: the latest cut-off wins.
            let e = sub.entry(s.id).or_insert(i64::MIN);
            *e = (*e).max(s.iat_before);
        }
        RevocationState {
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

    pub(crate) fn sid_revoked(&self, sid: &str) -> bool {
        self.sid.contains(sid)
    }

    pub(crate) fn jti_revoked(&self, jti: &str) -> bool {
        self.jti.contains(jti)
    }

    pub(crate) fn api_key_revoked(&self, id: &str) -> bool {
        self.api_key.contains(id)
    }

    /// A subject entry revokes what was issued at or before its cut-off; a credential without
    /// `iat` cannot prove it is newer, so it counts as revoked.
    pub(crate) fn subject_revoked(&self, sub: &str, iat: Option<i64>) -> bool {
        match self.sub.get(sub) {
            Some(cutoff) => iat.map_or(true, |iat| iat <= *cutoff),
            None => false,
        }
    }

    pub(crate) fn entry_count(&self) -> usize {
        self.sid.len() + self.jti.len() + self.sub.len() + self.api_key.len()
    }
}
