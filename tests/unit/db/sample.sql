-- A queries file for the loader tests.

-- name: first
-- Comment lines under the name are kept with the statement.
SELECT * FROM users WHERE id = $1;

-- name: second
UPDATE users SET name = $2 WHERE id = $1

-- name: differs
SELECT now()
