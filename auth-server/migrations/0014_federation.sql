-- Sign-in through an organisation's OpenID Connect identity providers. A connection belongs to
-- one organisation; the accounts it signs in are members there. Its client secret is sealed
-- with the master key, like the signing keys.
CREATE TABLE oidc_connections (
    id               TEXT PRIMARY KEY,            -- conn_…
    org_id           TEXT NOT NULL REFERENCES orgs(id),
    name             TEXT NOT NULL,               -- what the sign-in button says
    issuer           TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    client_secret    TEXT NULL,                   -- sealed; NULL for a public client (PKCE only)
    scopes           TEXT NOT NULL,               -- space-separated, openid first
    create_accounts  BIGINT NOT NULL DEFAULT 1,   -- first sight of a verified address creates the account
    roles            TEXT NOT NULL,               -- JSON array: roles of members it adds
    created_at       BIGINT NOT NULL
);
CREATE INDEX oidc_connections_org ON oidc_connections(org_id);

-- Who an identity provider's subject is here: (connection, sub) → the account.
CREATE TABLE federated_identities (
    connection_id  TEXT NOT NULL,
    subject        TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id),
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NULL,
    PRIMARY KEY (connection_id, subject)
);
CREATE INDEX federated_identities_user ON federated_identities(user_id);
