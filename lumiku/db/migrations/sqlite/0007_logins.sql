-- Logins (SPEC §17): the dashboard's `last_login_at` is the login before the current
-- session's. Each login moves `last_login_at` to `previous_login_at` and stamps the new one.
ALTER TABLE users ADD COLUMN last_login_at TIMESTAMP;
ALTER TABLE users ADD COLUMN previous_login_at TIMESTAMP;
