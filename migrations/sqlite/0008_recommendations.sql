-- What target-mode triggers recommended for each service, when, and from which Alertmanager
-- group (`source`, a digest of its group key): a scale-down goes no lower than the highest
-- recommendation of its stabilization window (at most an hour; older rows are deleted as new
-- ones come, and a group's rows when it resolves).
CREATE TABLE recommendations (
    service  TEXT NOT NULL,
    source   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    replicas INTEGER NOT NULL
);
CREATE INDEX recommendations_by_service ON recommendations (service, at);
