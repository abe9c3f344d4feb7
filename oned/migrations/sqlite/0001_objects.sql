-- Every pool object is one row: the indexed columns oned filters on plus the full document.
-- Rows of kind '_sequence' hold the next id of each kind (name = kind, body = next id): ids
-- only grow, so they are never reused, and they are written in the same statement as the
-- objects that used them.
CREATE TABLE objects (
    kind TEXT NOT NULL,
    oid BIGINT NOT NULL,
    name TEXT NOT NULL,
    uid BIGINT NOT NULL,
    gid BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, oid)
);

-- Singletons (bootstrap marker, server secrets).
CREATE TABLE system_attributes (
    name TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL
);
