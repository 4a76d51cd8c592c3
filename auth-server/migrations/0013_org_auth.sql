-- Each organisation's sign-in rules: the methods its people may sign in with, and whether
-- every session needs two factors. No row: every method the server offers, one factor.
CREATE TABLE org_auth (
    org_id        TEXT PRIMARY KEY REFERENCES orgs(id),
    methods       TEXT NOT NULL,                  -- JSON array of password, email_otp, totp, passkey
    mfa_required  BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);

-- Email domains an organisation claims. A claim counts once verified (by the operator, or by
-- the DNS TXT record `_authgate.<domain>` = `authgate-verification=<token>`); then the
-- organisation's rules govern every address of the domain from the login's first step. Several
-- organisations may ask for a domain; one at most holds it verified.
CREATE TABLE org_domains (
    domain       TEXT NOT NULL,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    token        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    verified_at  BIGINT NULL,
    PRIMARY KEY (domain, org_id)
);
CREATE UNIQUE INDEX org_domains_verified ON org_domains(domain) WHERE verified_at IS NOT NULL;
CREATE INDEX org_domains_org ON org_domains(org_id);
