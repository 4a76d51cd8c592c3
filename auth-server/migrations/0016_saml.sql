-- SAML 2.0 identity providers are connections too (kind 'saml'): their issuer is the IdP's
-- entity id, their client_id our entity id at the IdP; what else is known of the IdP (its
-- single sign-on URL, signing certificates, attribute mapping) is JSON here.
ALTER TABLE oidc_connections ADD COLUMN saml TEXT NULL;
