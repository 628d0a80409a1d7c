CREATE TABLE receivers (
    id               TEXT PRIMARY KEY,
    project          TEXT NOT NULL,
    name             TEXT NOT NULL,
    driver           TEXT NOT NULL,
    config           TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    token_generation INTEGER NOT NULL,
    created          INTEGER NOT NULL,
    updated          INTEGER NOT NULL,
    UNIQUE (project, name)
);
CREATE INDEX receivers_by_project ON receivers (project, id);

-- No foreign key: a trigger in flight while its receiver is deleted must still be able to
-- record; delete_receiver removes the history itself.
CREATE TABLE executions (
    id          TEXT PRIMARY KEY,
    receiver_id TEXT NOT NULL,
    at          INTEGER NOT NULL,
    source      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    scale_from  INTEGER,
    scale_to    INTEGER,
    reason      TEXT NOT NULL
);
CREATE INDEX executions_by_receiver ON executions (receiver_id, id);

CREATE TABLE signing_keys (
    kid     TEXT PRIMARY KEY,
    secret  TEXT NOT NULL,
    created INTEGER NOT NULL,
    retired INTEGER
);

CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    hash    TEXT NOT NULL UNIQUE,
    role    TEXT NOT NULL,
    project TEXT,
    created INTEGER NOT NULL
);

CREATE TABLE local_scales (
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    scale   INTEGER NOT NULL,
    PRIMARY KEY (backend, service)
);
