-- Invitations: an organisation's admin invites an address with roles; the emailed link lets
-- its holder choose a password and join. The token is stored as SHA-256; single use.
CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    email        TEXT NOT NULL,
    roles        TEXT NOT NULL,                   -- JSON array, checked when invited and again when accepted
    invited_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    accepted_at  BIGINT NULL,
    cancelled_at BIGINT NULL,
    user_id      TEXT NULL                        -- the account the acceptance created
);
CREATE INDEX invitations_org ON invitations(org_id);
