-- Executions, compact: ids and keys as 16-byte blobs, insertion order as the rowid (retention
-- deletes the oldest first), and the service a decision was about (cooldown is per service).
CREATE TABLE executions_v3 (
    seq        INTEGER PRIMARY KEY,
    id         BLOB NOT NULL,
    receiver   BLOB NOT NULL,
    service    TEXT,
    at         INTEGER NOT NULL,
    source     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    scale_from INTEGER,
    scale_to   INTEGER,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    dry_run    INTEGER NOT NULL,
    alerts     TEXT NOT NULL,
    dedup_key  BLOB
);
INSERT INTO executions_v3 (id, receiver, service, at, source, outcome, scale_from, scale_to, reason, detail,
                           dry_run, alerts, dedup_key)
    SELECT unhex(id), unhex(receiver_id), NULL, at, source, outcome, scale_from, scale_to, reason, detail,
           dry_run, alerts, unhex(dedup_key)
    FROM executions ORDER BY id;
DROP TABLE executions;
ALTER TABLE executions_v3 RENAME TO executions;

-- A receiver's history, newest first, and pruning it to a count.
CREATE UNIQUE INDEX executions_by_receiver ON executions (receiver, id);
-- Dedup: the last decision on a notification or idempotency key.
CREATE INDEX executions_decisions ON executions (receiver, dedup_key)
    WHERE dedup_key IS NOT NULL AND outcome IN ('scaled', 'unchanged') AND dry_run = 0;
-- Cooldown: a service's last change.
CREATE INDEX executions_changes ON executions (service) WHERE outcome = 'scaled' AND dry_run = 0;

-- Optimistic concurrency for receiver edits.
ALTER TABLE receivers ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;

-- A row /readyz rewrites to learn whether the disk takes writes again.
CREATE TABLE health (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
);
