-- The audit log (src/audit.rs): one row per security-relevant event, written in the transaction
-- of the change it records. Ids sort by time (`evt_` + microseconds + random), so `id` orders
-- the listing and is its cursor. No email addresses, no secrets: ids, the client address, facts.
CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,
    org_id       TEXT NULL,                      -- NULL: the platform's own events
    action       TEXT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NULL,
    target_type  TEXT NULL,
    target_id    TEXT NULL,
    ip           TEXT NULL,
    data         TEXT NOT NULL                   -- a JSON object
);
CREATE INDEX audit_events_org ON audit_events(org_id, id);
CREATE INDEX audit_events_at ON audit_events(at);
