-- Refresh rotation in place: the live token of a session is replaced by its successor in one
-- statement, and the spent token's hash is remembered here for reuse detection until it would
-- have expired. (Rows of refresh_tokens with used_at set come from 0001 and still count as spent.)
CREATE TABLE spent_refresh_tokens (
    hash        TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    spent_at    BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX spent_refresh_tokens_expires ON spent_refresh_tokens(expires_at);
