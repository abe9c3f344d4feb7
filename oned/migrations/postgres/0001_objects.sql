-- Every pool object is one row: the indexed columns oned filters on plus the full document.
CREATE TABLE objects (
    kind TEXT NOT NULL,
    oid BIGINT NOT NULL,
    name TEXT NOT NULL,
    uid BIGINT NOT NULL,
    gid BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, oid)
);

-- Next object id per kind: ids only grow, so they are never reused.
CREATE TABLE sequences (
    kind TEXT PRIMARY KEY NOT NULL,
    next_oid BIGINT NOT NULL
);

-- Singletons (bootstrap marker, server secrets).
CREATE TABLE system_attributes (
    name TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL
);
