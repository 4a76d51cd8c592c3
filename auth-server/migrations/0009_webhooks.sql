-- Webhooks (src/webhooks.rs): an organisation's admins register URLs; every audit event of the
-- organisation that a webhook wants is queued in `webhook_deliveries` in the event's own
-- transaction (the outbox), and leaves the queue only when the receiver answered 2xx or the
-- attempts ran out: delivered at least once, across crashes and restarts.
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    url          TEXT NOT NULL,
    secret       TEXT NOT NULL,                  -- sealed with the master key (context webhook:<id>)
    actions      TEXT NOT NULL,                  -- JSON array of actions or families; [] = all
    created_by   TEXT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX webhooks_org ON webhooks(org_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    payload          TEXT NOT NULL,              -- the event as the audit API shows it
    attempts         BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,            -- unix milliseconds; also the claim (lease) marker
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT NULL,
    failed_at        BIGINT NULL,
    last_status      BIGINT NULL,
    last_error       TEXT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, created_at);
