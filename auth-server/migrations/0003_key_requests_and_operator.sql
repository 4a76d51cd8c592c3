-- API keys are minted only once their creation is verified: until then the request waits here
-- (it is not a credential, so the revocation feed never lists it).
CREATE TABLE api_key_requests (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    org_id      TEXT NULL,
    name        TEXT NOT NULL,
    roles       TEXT NOT NULL,                     -- JSON array
    lifetime_s  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX api_key_requests_user ON api_key_requests(user_id);

-- Keys left pending by earlier versions were handed out with their secret and were listed in
-- the feed as revoked. The feed no longer lists pending keys: they become revoked keys, listed
-- until they expire.
INSERT INTO revocations (kind, id, iat_before, exp, created_at)
    SELECT 'api_key', id, NULL, COALESCE(expires_at, 253402300799), created_at FROM api_keys WHERE status = 'pending'
    ON CONFLICT (kind, id) DO NOTHING;
UPDATE api_keys SET status = 'revoked', revoked_at = created_at WHERE status = 'pending';
UPDATE feed_state SET ver = ver + 1 WHERE id = 1;
