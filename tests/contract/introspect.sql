-- Schema introspection for the equivalence test: PostgreSQL here, SQLite in
-- introspect.sqlite.sql. Each block takes the table name as $1 where it needs one.

-- name: tables
SELECT c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind = 'r'
ORDER BY 1

-- name: columns
SELECT a.attname AS name,
       format_type(a.atttypid, NULL) AS type,
       a.attnotnull AS not_null,
       a.atthasdef AS has_default
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum

-- name: unique_indexes
SELECT x.indisprimary AS is_primary,
       x.indpred IS NOT NULL AS partial,
       ARRAY(
           SELECT coalesce(a.attname::text, '<expr>')
           FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
           LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
           ORDER BY k.ord
       ) AS columns
FROM pg_index x
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND t.relname = $1 AND x.indisunique

-- name: foreign_keys
SELECT ARRAY(
           SELECT a.attname::text
           FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
           ORDER BY k.ord
       ) AS columns,
       ref.relname AS ref_table,
       ARRAY(
           SELECT a.attname::text
           FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
           ORDER BY k.ord
       ) AS ref_columns,
       CASE con.confdeltype
           WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default'
           WHEN 'r' THEN 'restrict' ELSE 'no action'
       END AS on_delete
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_class ref ON ref.oid = con.confrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE con.contype = 'f' AND n.nspname = current_schema() AND t.relname = $1

-- name: check_constraints
SELECT con.conname AS name
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE con.contype = 'c' AND n.nspname = current_schema() AND t.relname = $1
ORDER BY 1

-- SQLite only (introspect.sqlite.sql); PostgreSQL answers these through the blocks above.

-- name: table_sql
SELECT NULL AS sql

-- name: index_columns
SELECT NULL AS name
