-- What kind of provider a connection is: generic OpenID Connect, or a preset that knows a
-- provider's quirks (Google, Microsoft personal accounts, Microsoft Entra ID, GitHub). Entra ID
-- connections list the tenants whose people they sign in (JSON array of tenant ids).
ALTER TABLE oidc_connections ADD COLUMN kind TEXT NOT NULL DEFAULT 'oidc';
ALTER TABLE oidc_connections ADD COLUMN tenants TEXT NOT NULL DEFAULT '[]';

-- Sign-in rules gain `sso` (the organisation's identity providers): rules set before it existed
-- allowed every provider, and still do.
UPDATE org_auth SET methods = REPLACE(methods, ']', ',"sso"]');
