-- Projects created through the API (the config file's projects are not stored), token
-- expiry, and the audit log of management actions.
CREATE TABLE projects (
    name    TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    created INTEGER NOT NULL
);

ALTER TABLE api_tokens ADD COLUMN expires INTEGER;
CREATE INDEX api_tokens_by_project ON api_tokens (project);

CREATE TABLE audit (
    id      BLOB PRIMARY KEY,   -- a UUIDv7: time-ordered
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,      -- the API token's name
    actor_id TEXT NOT NULL,     -- and its id
    project TEXT,               -- NULL: not about one project (keys, global tokens)
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_project ON audit (project, id);
