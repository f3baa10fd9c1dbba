-- name: differs
SELECT strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') WHERE $1 = $1
