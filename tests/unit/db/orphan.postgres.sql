-- name: missing_in_base
SELECT 2
