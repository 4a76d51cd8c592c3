-- A person may belong to several organisations. A membership holds the roles the person has in
-- that organisation; a session (and every token it issues) is for one membership, the one
-- picked at login. `users.org_id` stays as the organisation the account was created in (its
-- home: where account-wide events are logged when no session says otherwise).
CREATE TABLE memberships (
    user_id      TEXT NOT NULL REFERENCES users(id),
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    created_at   BIGINT NOT NULL,
    disabled_at  BIGINT NULL,                      -- set by the organisation's admins: no sign-in there
    PRIMARY KEY (user_id, org_id)
);
CREATE INDEX memberships_org ON memberships(org_id);

CREATE TABLE member_roles (
    user_id  TEXT NOT NULL,
    org_id   TEXT NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (user_id, org_id, role)
);

-- Every account so far belonged to one organisation; a disabled account becomes an active
-- account with its one membership disabled (disabling is the organisation's act now).
INSERT INTO memberships (user_id, org_id, created_at, disabled_at)
    SELECT id, org_id, created_at, CASE WHEN status = 'disabled' THEN created_at ELSE NULL END FROM users;
UPDATE users SET status = 'active' WHERE status = 'disabled';
INSERT INTO member_roles (user_id, org_id, role)
    SELECT r.user_id, u.org_id, r.role FROM user_roles r JOIN users u ON u.id = r.user_id;
DROP TABLE user_roles;

ALTER TABLE sessions ADD COLUMN org_id TEXT NULL;
UPDATE sessions SET org_id = (SELECT u.org_id FROM users u WHERE u.id = sessions.user_id);
CREATE INDEX sessions_org ON sessions(org_id);

ALTER TABLE oauth_codes ADD COLUMN org_id TEXT NULL;
UPDATE oauth_codes SET org_id = (SELECT u.org_id FROM users u WHERE u.id = oauth_codes.user_id);
