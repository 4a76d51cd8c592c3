-- authgate as an OpenID Connect provider: registered clients (the machine clients' table, with
-- what the authorization-code flow needs), authorization codes, remembered consents, and the
-- sessions a client holds for a user.

ALTER TABLE clients ADD COLUMN grant_types TEXT NOT NULL DEFAULT '["client_credentials"]';
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
-- 1: a public client (SPA, mobile app): no secret (secret_hash is ''), PKCE always.
ALTER TABLE clients ADD COLUMN public_client BIGINT NOT NULL DEFAULT 0;
-- 1: the organisation's own app: its own members are not asked for consent.
ALTER TABLE clients ADD COLUMN first_party BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN require_pkce BIGINT NOT NULL DEFAULT 1;
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NULL;
ALTER TABLE clients ADD COLUMN access_ttl_s BIGINT NULL;
ALTER TABLE clients ADD COLUMN refresh_ttl_s BIGINT NULL;

-- A session opened by a client's code exchange: its refresh tokens work only for that client.
ALTER TABLE sessions ADD COLUMN client_id TEXT NULL;
ALTER TABLE sessions ADD COLUMN scope TEXT NULL;
CREATE INDEX sessions_client ON sessions(client_id);

-- `access`: signs access tokens (the newest active one); `id_token`: kept so that clients can
-- ask for an ID-token algorithm other than the access tokens' (`oidc.id_token_algs`).
ALTER TABLE signing_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'access';

CREATE TABLE oauth_codes (
    hash            TEXT PRIMARY KEY,             -- SHA-256 of the code, hex
    client_id       TEXT NOT NULL REFERENCES clients(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    redirect_uri    TEXT NOT NULL,
    scope           TEXT NOT NULL,
    code_challenge  TEXT NULL,                    -- S256 only
    nonce           TEXT NULL,
    auth_time       BIGINT NOT NULL,
    amr             TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT NULL,
    session_id      TEXT NULL,                    -- what the exchange issued: revoked on replay
    replayed_at     BIGINT NULL                   -- a second presentation, seen by a racing first exchange
);
CREATE INDEX oauth_codes_expires ON oauth_codes(expires_at);

CREATE TABLE oauth_consents (
    user_id     TEXT NOT NULL REFERENCES users(id),
    client_id   TEXT NOT NULL REFERENCES clients(id),
    scope       TEXT NOT NULL,                    -- space-separated, what was granted
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
