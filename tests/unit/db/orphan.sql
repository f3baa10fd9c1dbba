-- name: only
SELECT 1
