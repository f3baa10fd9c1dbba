-- Accounts: users, their passwords, roles and tags. Emails are stored lower-cased.

-- name: insert_user
INSERT INTO users (id, email, password_hash, name, role, tags, token_version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)
RETURNING id, email, name, role, tags, token_version, created_at

-- name: user_by_email
SELECT id, email, password_hash, name, role, tags, token_version, created_at
FROM users WHERE email = $1

-- name: user_by_id
SELECT id, email, password_hash, name, role, tags, token_version, created_at
FROM users WHERE id = $1

-- name: update_profile
UPDATE users SET name = $2, email = $3, updated_at = $4 WHERE id = $1
RETURNING id, email, name, role, tags, token_version, created_at

-- name: change_password
-- Bumping token_version invalidates every token issued before.
UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = $3
WHERE id = $1
RETURNING id, email, name, role, tags, token_version, created_at

-- name: rehash_password
UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3

-- name: set_role
UPDATE users SET role = $2, updated_at = $3 WHERE id = $1

-- name: set_tags
UPDATE users SET tags = $2, updated_at = $3 WHERE id = $1
RETURNING id, email, name, role, tags, token_version, created_at

-- name: record_login
-- The login before this one becomes the previous login (the dashboard's last_login_at).
UPDATE users SET previous_login_at = last_login_at, last_login_at = $2 WHERE id = $1

-- name: previous_login
SELECT previous_login_at FROM users WHERE id = $1
