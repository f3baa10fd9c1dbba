-- name: tables
SELECT name FROM sqlite_schema
WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
ORDER BY 1

-- name: columns
-- "pk" is the column's position in the primary key (0 when not in it).
SELECT name, type, "notnull" AS not_null, dflt_value IS NOT NULL AS has_default, pk
FROM pragma_table_info($1)
ORDER BY cid

-- name: unique_indexes
SELECT name, origin, partial FROM pragma_index_list($1) WHERE "unique" = 1

-- name: foreign_keys
SELECT id, "table" AS ref_table, "from" AS column_name, "to" AS ref_column, on_delete
FROM pragma_foreign_key_list($1)
ORDER BY id, seq

-- name: table_sql
SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = $1

-- name: index_columns
SELECT coalesce(name, '<expr>') AS name FROM pragma_index_info($1) ORDER BY seqno
