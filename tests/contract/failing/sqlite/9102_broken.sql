-- The first statement succeeds; the second fails, so the whole migration must roll back.
CREATE TABLE half_done (id integer PRIMARY KEY);
INSERT INTO half_done (id) VALUES (1);
INSERT INTO no_such_table (id) VALUES (1);
