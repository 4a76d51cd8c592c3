//! What the isolate keeps in the Cache API and takes back out of it, host-independent: copies
//! of fetched material, sealed with the worker's cache key (`auth_core::material::seal_copy`)
//! because every Worker of the zone can write to the Cache API.

use auth_core::material::{open_copy, seal_copy};
use auth_core::{Gateway, MaterialEvent, Source, UnixTime, Via};

/// Cache API URLs live under a reserved name (`.invalid` never resolves).
pub const CACHE_BASE: &str = "https://authgate-material.invalid/v2/";

/// A copy to write: where, the sealed bytes, for how long.
#[derive(Debug, PartialEq, Eq)]
pub struct CacheWrite {
    pub url: String,
    pub sealed: Vec<u8>,
    pub max_age_s: u64,
}

/// The Cache API URL of a source's copy (by its stable key: same URL, same copy).
pub fn cache_url(source_key: &str) -> String {
    format!("{CACHE_BASE}{source_key}")
}

/// The copy to keep for an event: material this isolate fetched itself (never what it read from
/// the cache), while it is still worth keeping, when the worker has a cache key.
pub fn write_for(gateway: &Gateway, key: Option<&[u8; 32]>, event: &MaterialEvent) -> Option<CacheWrite> {
    let key = key?;
    let (source, copy) = match event {
        MaterialEvent::Applied { source, via: Via::Fetch, copy } | MaterialEvent::Confirmed { source, via: Via::Fetch, copy } => {
            (*source, copy)
        }
        _ => return None,
    };
    let info = gateway.sources().iter().find(|s| s.source == source)?;
    (copy.keep_for_s > 0).then(|| CacheWrite {
        url: cache_url(&info.key),
        sealed: seal_copy(key, &info.key, copy),
        max_age_s: copy.keep_for_s,
    })
}

/// Applies a copy read from the Cache API if it opens with the key; the events say what came of
/// it. Returns whether it was authentic.
pub fn apply_read(gateway: &mut Gateway, key: &[u8; 32], source: Source, sealed: &[u8], now: UnixTime) -> bool {
    let Some(info) = gateway.sources().iter().find(|s| s.source == source) else { return false };
    let Some((fetched_at, body)) = open_copy(key, &info.key, sealed) else { return false };
    gateway.apply_material(source, body, fetched_at, now);
    true
}

#[cfg(test)]
mod tests {
    use auth_core::{FetchResponse, MaterialCopy};

    use super::*;

    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    const T0: i64 = 1_700_000_000;

    fn gateway() -> Gateway {
        let cfg = r#"{"providers": [{"issuer": "https://iss", "audiences": ["api"], "jwks_uri": "http://127.0.0.1:9000/jwks"}],
                      "routes": [{"prefix": "/", "require": "authenticated"}], "fetch": {"jwks_max_stale_s": 600}}"#;
        Gateway::from_json(cfg.as_bytes()).unwrap()
    }

    fn fetched(gw: &mut Gateway, now: i64) -> Vec<MaterialEvent> {
        let f = gw.poll_fetch(UnixTime::from_secs(now)).unwrap();
        gw.handle_fetch(f.id, FetchResponse { status: 200, body: JWKS.as_bytes(), etag: None }, UnixTime::from_secs(now));
        std::iter::from_fn(|| gw.poll_event()).collect()
    }

    #[test]
    fn fetched_material_is_kept_sealed_until_its_stale_bound_and_read_back_by_a_new_isolate() {
        let key = [3u8; 32];
        let mut warm = gateway();
        let events = fetched(&mut warm, T0);
        let write = write_for(&warm, Some(&key), &events[0]).expect("a fetched JWKS is kept");
        assert_eq!(write.max_age_s, 600);
        assert_eq!(write.url, cache_url(&warm.sources()[0].key));
        assert!(events.iter().skip(1).all(|e| write_for(&warm, Some(&key), e).is_none()), "Ready is not material");
        assert_eq!(write_for(&warm, None, &events[0]), None, "no key: nothing kept");

        let mut cold = gateway();
        assert!(apply_read(&mut cold, &key, Source::Jwks(0), &write.sealed, UnixTime::from_secs(T0 + 100)));
        let read: Vec<MaterialEvent> = std::iter::from_fn(|| cold.poll_event()).collect();
        assert!(
            matches!(&read[0], MaterialEvent::Applied { via: Via::Host, copy, .. } if copy.fetched_at == UnixTime::from_secs(T0)),
            "{read:?}"
        );
        assert!(cold.is_ready());
        assert!(read.iter().all(|e| write_for(&cold, Some(&key), e).is_none()), "what was read is not written back");
    }

    #[test]
    fn a_copy_planted_by_another_worker_is_not_applied() {
        let key = [3u8; 32];
        let mut cold = gateway();
        let planted = MaterialCopy { body: JWKS.as_bytes().into(), fetched_at: UnixTime::from_secs(T0), keep_for_s: 600 };
        let forged = seal_copy(&[4u8; 32], &cold.sources()[0].key, &planted);
        assert!(!apply_read(&mut cold, &key, Source::Jwks(0), &forged, UnixTime::from_secs(T0)));
        assert!(!apply_read(&mut cold, &key, Source::Jwks(0), JWKS.as_bytes(), UnixTime::from_secs(T0)), "the old unsealed format");
        assert!(cold.poll_event().is_none());
        assert!(!cold.is_ready());
    }
}
