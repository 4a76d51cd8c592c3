-- Suspended organisations: while `suspended_at` is set, the organisation is listed in the
-- revocation feed (`revocations` kind `org`, added by this version), so every credential naming
-- it is refused at the gateways and the server; reinstating clears both.
ALTER TABLE orgs ADD COLUMN suspended_at BIGINT NULL;
