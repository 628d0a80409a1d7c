-- Long actions (upgrades) and their durable progress; an execution may name the job it started.
ALTER TABLE executions ADD COLUMN job BLOB;

CREATE TABLE jobs (
    id       BLOB PRIMARY KEY,
    receiver BLOB NOT NULL,
    state    TEXT NOT NULL,
    created  INTEGER NOT NULL,
    -- The job in the store's own JSON format (store/rows.rs).
    body     TEXT NOT NULL
);
CREATE INDEX jobs_by_receiver ON jobs (receiver, id);
CREATE INDEX jobs_running ON jobs (state) WHERE state = 'running';

-- The image a local service was upgraded to (its config's image until then).
CREATE TABLE local_images (
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    image   TEXT NOT NULL,
    PRIMARY KEY (backend, service)
);
