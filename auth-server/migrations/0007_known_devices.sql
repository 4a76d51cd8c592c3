-- Devices and networks an account signed in from (a hash of the user agent and the /24 or /64),
-- so that a sign-in from a new one can be told to the person.
CREATE TABLE known_devices (
    user_id      TEXT NOT NULL REFERENCES users(id),
    fingerprint  TEXT NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    PRIMARY KEY (user_id, fingerprint)
);
