-- Passkeys (WebAuthn credentials). `credential` is webauthn-rs's `Passkey` as JSON (public key,
-- signature counter, backup flags), rewritten after each use; `user_handle` is the account's
-- WebAuthn user id (a UUID derived from the user id), which discoverable sign-in hands back.
CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id),
    user_handle    TEXT NOT NULL,
    credential_id  TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    credential     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NULL
);
CREATE INDEX passkeys_user ON passkeys(user_id);
CREATE INDEX passkeys_user_handle ON passkeys(user_handle);
