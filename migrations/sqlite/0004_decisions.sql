-- The last decision on each dedup key (an Alertmanager notification, an Idempotency-Key),
-- kept apart from the executions: history retention must never make a retry act twice.
-- Kept for the longest dedup window (a week), whatever happens to the executions.
CREATE TABLE decisions (
    receiver  BLOB NOT NULL,
    key       BLOB NOT NULL,
    at        INTEGER NOT NULL,
    execution BLOB NOT NULL,
    PRIMARY KEY (receiver, key)
) WITHOUT ROWID;
CREATE INDEX decisions_by_age ON decisions (at);

INSERT INTO decisions (receiver, key, at, execution)
    SELECT receiver, dedup_key, MAX(at), id FROM executions
    WHERE dedup_key IS NOT NULL AND outcome IN ('scaled', 'unchanged') AND dry_run = 0
    GROUP BY receiver, dedup_key;
DROP INDEX executions_decisions;

-- Each service's last change (cooldown is per service), kept apart from the executions too.
CREATE TABLE service_changes (
    service TEXT PRIMARY KEY,
    at      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO service_changes (service, at)
    SELECT service, MAX(at) FROM executions
    WHERE service IS NOT NULL AND outcome = 'scaled' AND dry_run = 0
    GROUP BY service;
DROP INDEX executions_changes;
