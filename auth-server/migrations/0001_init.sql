-- authgate auth-server schema. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are unix seconds (BIGINT); binary values are stored base64url in TEXT.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    email                TEXT NOT NULL UNIQUE,
    org_id               TEXT NOT NULL REFERENCES orgs(id),
    password_hash        TEXT NOT NULL,
    status               TEXT NOT NULL,            -- pending | active | disabled
    mfa                  TEXT NOT NULL DEFAULT 'none', -- none | email_otp | totp
    totp_secret          TEXT NULL,                -- AES-GCM sealed with the master key
    totp_pending         TEXT NULL,                -- enrolment not confirmed yet
    totp_last_step       BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL,
    verified_at          BIGINT NULL,
    password_changed_at  BIGINT NOT NULL
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE user_roles (
    user_id  TEXT NOT NULL REFERENCES users(id),
    role     TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT NULL,
    revoked_reason  TEXT NULL,
    amr             TEXT NOT NULL,
    user_agent      TEXT NULL,
    ip              TEXT NULL,
    cookie_mode     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE refresh_tokens (
    hash        TEXT PRIMARY KEY,                  -- SHA-256 of the token, hex
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,                 -- the `id` claim (128 random bits, hex)
    key_id       TEXT NOT NULL,                    -- the public agk_ key id
    subject      TEXT NOT NULL,
    user_id      TEXT NULL REFERENCES users(id),   -- NULL for service keys (gateways)
    org_id       TEXT NULL,
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,                    -- JSON array
    created_at   BIGINT NOT NULL,                  -- = iat
    expires_at   BIGINT NULL,
    status       TEXT NOT NULL,                    -- pending | active | revoked
    verified_at  BIGINT NULL,
    revoked_at   BIGINT NULL
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE INDEX api_keys_status ON api_keys(status);

CREATE TABLE clients (
    id           TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL,                    -- SHA-256 of a 256-bit random secret, hex
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    name         TEXT NOT NULL,
    roles        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   TEXT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT NULL
);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_key   TEXT NOT NULL,                   -- AES-256-GCM sealed with the master key
    public_jwk    TEXT NULL,                       -- NULL for HS256
    created_at    BIGINT NOT NULL,
    activates_at  BIGINT NOT NULL,
    retires_at    BIGINT NULL
);

CREATE TABLE revocations (
    kind        TEXT NOT NULL,                     -- sid | jti | sub | api_key
    id          TEXT NOT NULL,
    iat_before  BIGINT NULL,
    exp         BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- One row: the feed version, bumped in the same transaction as every change the feed shows.
CREATE TABLE feed_state (
    id          BIGINT PRIMARY KEY,
    ver         BIGINT NOT NULL,
    touched_at  BIGINT NOT NULL
);
INSERT INTO feed_state (id, ver, touched_at) VALUES (1, 1, 0);

-- Ephemeral state when no Redis is configured.
CREATE TABLE kv (
    k           TEXT PRIMARY KEY,
    v           TEXT NULL,
    n           BIGINT NOT NULL DEFAULT 0,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX kv_expires ON kv(expires_at);
