CREATE TABLE good_table (id integer PRIMARY KEY);
