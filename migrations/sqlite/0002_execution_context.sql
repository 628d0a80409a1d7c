-- What an execution was about: dry runs, the alerts behind it, and the dedup key of its notification.
ALTER TABLE executions ADD COLUMN detail TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN alerts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE executions ADD COLUMN dedup_key TEXT;

-- Cooldown: the receiver's last change. Dedup: its last decision on a notification.
CREATE INDEX executions_by_outcome ON executions (receiver_id, outcome, id);
CREATE INDEX executions_by_dedup_key ON executions (receiver_id, dedup_key, id) WHERE dedup_key IS NOT NULL;
