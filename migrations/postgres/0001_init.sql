-- The schema SQLite reached by its seventh migration, in one step, in PostgreSQL's types;
-- plus what several replicas need: job leases, a settings table.
CREATE TABLE receivers (
    id               TEXT PRIMARY KEY,
    project          TEXT NOT NULL,
    name             TEXT NOT NULL,
    driver           TEXT NOT NULL,
    config           TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    token_generation BIGINT NOT NULL,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    revision         BIGINT NOT NULL DEFAULT 1,
    verify           TEXT,
    UNIQUE (project, name)
);
CREATE INDEX receivers_by_project ON receivers (project, id);

-- No foreign key: a trigger in flight while its receiver is deleted must still be able to
-- record; delete_receiver removes the history itself.
CREATE TABLE executions (
    seq        BIGSERIAL,
    id         BYTEA PRIMARY KEY,
    receiver   BYTEA NOT NULL,
    service    TEXT,
    at         BIGINT NOT NULL,
    source     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    scale_from BIGINT,
    scale_to   BIGINT,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    dry_run    BOOLEAN NOT NULL,
    alerts     TEXT NOT NULL,
    dedup_key  BYTEA,
    job        BYTEA
);
CREATE UNIQUE INDEX executions_by_receiver ON executions (receiver, id);
CREATE INDEX executions_by_seq ON executions (seq);

-- The last decision on each dedup key, and each service's last change: kept apart from the
-- executions, so that retention never makes a retry act twice.
CREATE TABLE decisions (
    receiver  BYTEA NOT NULL,
    key       BYTEA NOT NULL,
    at        BIGINT NOT NULL,
    execution BYTEA NOT NULL,
    PRIMARY KEY (receiver, key)
);
CREATE INDEX decisions_by_age ON decisions (at);

-- Appended to, never updated: concurrent changes never wait on one row. Rows older than the
-- longest window are pruned.
CREATE TABLE service_changes (
    service TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX service_changes_by_service ON service_changes (service, at);

CREATE TABLE signing_keys (
    kid     TEXT PRIMARY KEY,
    secret  TEXT NOT NULL,
    created BIGINT NOT NULL,
    retired BIGINT
);

CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    hash    TEXT NOT NULL UNIQUE,
    role    TEXT NOT NULL,
    project TEXT,
    created BIGINT NOT NULL,
    expires BIGINT
);
CREATE INDEX api_tokens_by_project ON api_tokens (project);

CREATE TABLE projects (
    name    TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE audit (
    id       BYTEA PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    project  TEXT,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX audit_by_project ON audit (project, id);

CREATE TABLE local_scales (
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    scale   BIGINT NOT NULL,
    PRIMARY KEY (backend, service)
);

CREATE TABLE local_images (
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    image   TEXT NOT NULL,
    PRIMARY KEY (backend, service)
);

-- A job is run by the replica holding its lease; one whose lease ran out is taken over.
CREATE TABLE jobs (
    id          BYTEA PRIMARY KEY,
    receiver    BYTEA NOT NULL,
    state       TEXT NOT NULL,
    created     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    owner       TEXT,
    lease_until BIGINT
);
CREATE INDEX jobs_by_receiver ON jobs (receiver, id);
CREATE INDEX jobs_running ON jobs (state) WHERE state = 'running';

-- Values every replica must agree on (the sealing key's check value).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
