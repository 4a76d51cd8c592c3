-- A display name people set for themselves (or their organisation's admins set for them).
ALTER TABLE users ADD COLUMN name TEXT NULL;
