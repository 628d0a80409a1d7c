//! The writes the SQLite writer thread applies, one function each, inside its transaction.
//!
//! A write either succeeds, fails on its own (a name taken, a stale revision: the
//! transaction goes on without it), or fails the whole batch (an I/O error, a full disk).

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::super::{
    rows::{alerts_to_json, config_to_json, job_to_json, verify_to_json, ReceiverRow},
    ApiToken, AuditEntry, ReceiverEdit, SigningKey, StateWrite, StoreError, StoredProject,
};
use crate::domain::{now_millis, ApiTokenId, Execution, Job, Millis, ProjectName, Receiver, ReceiverId};

/// A write queued for the writer thread.
pub enum Op {
    Execution {
        execution: Execution,
        state: Option<StateWrite>,
    },
    InsertReceiver(Receiver),
    /// The edit is taken when it is applied.
    EditReceiver(ReceiverId, Option<ReceiverEdit>),
    DeleteReceiver(ReceiverId),
    InsertSigningKey(SigningKey),
    InsertApiToken(ApiToken),
    DeleteApiToken(ApiTokenId),
    RetireSigningKeys {
        keep: String,
        at: Millis,
    },
    InsertProject(StoredProject),
    DeleteProject(ProjectName),
    Audit(AuditEntry),
    /// A job, with the execution that started it when it is new.
    Job {
        job: Job,
        execution: Option<Execution>,
    },
    State(StateWrite),
    Recommendation(String, crate::domain::target::Recommendation),
    /// A service's recommendations from one source, taken back.
    ForgetRecommendations(String, String),
    /// A real write that changes nothing of interest: can the store write now?
    Probe,
}

/// What a write came to.
#[derive(Debug)]
pub enum Done {
    Written,
    /// An execution row was added (not replaced): the receiver holds one more.
    Inserted,
    Deleted(bool),
    Updated(Box<Receiver>),
    Count(u64),
}

/// Why a write failed.
pub enum Failure {
    /// This write alone: the batch goes on.
    Own(StoreError),
    /// The whole batch: roll back and answer every write with an error.
    Batch(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Batch(e)
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// A unique-index violation is the caller's conflict; anything else fails the batch.
fn unique(e: rusqlite::Error, what: impl FnOnce() -> String) -> Failure {
    if is_constraint(&e) {
        Failure::Own(StoreError::Conflict(what()))
    } else {
        Failure::Batch(e)
    }
}

fn name_taken(r: &Receiver) -> String {
    // Rancher's sentence, then where.
    format!("Cannot have duplicate webhook name, webhook {} already exists in project {}", r.name.as_str(), r.project)
}

pub fn apply(conn: &Connection, op: &mut Op) -> Result<Done, Failure> {
    match op {
        Op::Execution { execution, state } => {
            if let Some(state) = state {
                write_state(conn, state)?;
            }
            record(conn, execution)
        }
        Op::InsertReceiver(r) => {
            conn.prepare_cached(
                "INSERT INTO receivers (id, project, name, driver, config, enabled, token_generation, created, \
                 updated, revision, verify) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                r.id.to_string(),
                r.project.as_str(),
                r.name.as_str(),
                r.config.driver().as_str(),
                config_to_json(&r.config),
                r.enabled,
                r.token_generation,
                r.created,
                r.updated,
                r.revision,
                verify_to_json(r.verify.as_ref()),
            ])
            .map_err(|e| unique(e, || name_taken(r)))?;
            Ok(Done::Written)
        }
        Op::EditReceiver(id, edit) => {
            let Some(stored) = read_receiver(conn, *id)? else {
                return Err(Failure::Own(StoreError::NotFound));
            };
            let mut r = stored.clone();
            if let Some(edit) = edit.take() {
                edit(&mut r);
            }
            let r = Receiver {
                id: stored.id,
                project: stored.project,
                created: stored.created,
                revision: stored.revision + 1,
                updated: now_millis(),
                ..r
            };
            conn.prepare_cached(
                "UPDATE receivers SET name = ?1, config = ?2, enabled = ?3, token_generation = ?4, updated = ?5, \
                 revision = ?6, verify = ?8 WHERE id = ?7",
            )?
            .execute(params![
                r.name.as_str(),
                config_to_json(&r.config),
                r.enabled,
                r.token_generation,
                r.updated,
                r.revision,
                r.id.to_string(),
                verify_to_json(r.verify.as_ref()),
            ])
            .map_err(|e| unique(e, || name_taken(&r)))?;
            Ok(Done::Updated(Box::new(r)))
        }
        Op::DeleteReceiver(id) => {
            let deleted = conn.prepare_cached("DELETE FROM receivers WHERE id = ?1")?.execute([id.to_string()])?;
            conn.prepare_cached("DELETE FROM executions WHERE receiver = ?1")?.execute([id.as_bytes()])?;
            conn.prepare_cached("DELETE FROM decisions WHERE receiver = ?1")?.execute([id.as_bytes()])?;
            Ok(Done::Deleted(deleted > 0))
        }
        Op::InsertSigningKey(key) => {
            conn.prepare_cached(
                "INSERT INTO signing_keys (kid, secret, created, retired) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (kid) DO NOTHING",
            )?
            .execute(params![key.kid, hex::encode(&key.secret), key.created, key.retired])?;
            Ok(Done::Written)
        }
        Op::InsertApiToken(t) => {
            conn.prepare_cached(
                "INSERT INTO api_tokens (id, name, hash, role, project, created, expires, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                t.id.to_string(),
                t.name,
                t.hash,
                t.role.as_str(),
                t.project.as_ref().map(|p| p.as_str()),
                t.created,
                t.expires,
                t.created_by.map(|id| id.to_string())
            ])
            .map_err(|e| unique(e, || "this API token already exists".to_owned()))?;
            Ok(Done::Written)
        }
        Op::DeleteApiToken(id) => {
            let n = conn.prepare_cached("DELETE FROM api_tokens WHERE id = ?1")?.execute([id.to_string()])?;
            Ok(Done::Deleted(n > 0))
        }
        Op::RetireSigningKeys { keep, at } => {
            let n = conn
                .prepare_cached("UPDATE signing_keys SET retired = ?2 WHERE retired IS NULL AND kid <> ?1")?
                .execute(params![*keep, *at])?;
            Ok(Done::Count(n as u64))
        }
        Op::InsertProject(p) => {
            conn.prepare_cached("INSERT INTO projects (name, backend, created) VALUES (?1, ?2, ?3)")?
                .execute(params![p.name.as_str(), p.backend, p.created])
                .map_err(|e| unique(e, || format!("there is already a project {}", p.name)))?;
            Ok(Done::Written)
        }
        Op::DeleteProject(name) => {
            let receivers: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM receivers WHERE project = ?1")?
                .query_row([name.as_str()], |r| r.get(0))?;
            if receivers > 0 {
                return Err(Failure::Own(StoreError::Conflict(format!(
                    "project {name} still has {receivers} receiver(s); delete them first"
                ))));
            }
            let n = conn.prepare_cached("DELETE FROM projects WHERE name = ?1")?.execute([name.as_str()])?;
            if n > 0 {
                // A project made again under this name must not find old tokens scoped to it.
                conn.prepare_cached("DELETE FROM api_tokens WHERE project = ?1")?.execute([name.as_str()])?;
            }
            Ok(Done::Deleted(n > 0))
        }
        Op::Audit(a) => {
            conn.prepare_cached(
                "INSERT INTO audit (id, at, actor, actor_id, project, action, target, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                &a.id.as_bytes()[..],
                a.at,
                a.actor,
                a.actor_id.to_string(),
                a.project.as_ref().map(|p| p.as_str()),
                a.action,
                a.target,
                a.detail
            ])?;
            Ok(Done::Written)
        }
        Op::Job { job, execution } => {
            conn.prepare_cached(
                "INSERT INTO jobs (id, receiver, state, created, body) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
            )?
            .execute(params![
                &job.id.as_bytes()[..],
                &job.receiver.as_bytes()[..],
                job.state.as_str(),
                job.created,
                job_to_json(job)
            ])?;
            match execution {
                Some(e) => record(conn, e),
                None => Ok(Done::Written),
            }
        }
        Op::State(state) => {
            write_state(conn, state)?;
            Ok(Done::Written)
        }
        Op::Recommendation(service, r) => {
            let forget = r.at - i64::from(crate::domain::target::MAX_STABILIZATION_SECONDS) * 1000;
            conn.prepare_cached("DELETE FROM recommendations WHERE service = ?1 AND at < ?2")?
                .execute(params![service.as_str(), forget])?;
            conn.prepare_cached("INSERT INTO recommendations (service, source, at, replicas) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![service.as_str(), r.source.as_str(), r.at, r.replicas])?;
            Ok(Done::Written)
        }
        Op::ForgetRecommendations(service, source) => {
            conn.prepare_cached("DELETE FROM recommendations WHERE service = ?1 AND source = ?2")?
                .execute(params![service.as_str(), source.as_str()])?;
            Ok(Done::Written)
        }
        Op::Probe => {
            conn.prepare_cached(
                "INSERT INTO health (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )?
            .execute([crate::domain::now_millis()])?;
            Ok(Done::Written)
        }
    }
}

/// Keeps the decision on the execution's dedup key: a new one replaces the last; an intent
/// re-recorded as anything else (it failed) is no decision any more.
fn record_decision(conn: &Connection, e: &Execution, replaced: bool) -> rusqlite::Result<()> {
    if let (Some(service), true) = (&e.service, e.is_change()) {
        conn.prepare_cached(
            "INSERT INTO service_changes (service, at) VALUES (?1, ?2) \
             ON CONFLICT (service) DO UPDATE SET at = max(at, excluded.at)",
        )?
        .execute(params![service.as_str(), e.at])?;
    }
    let Some(key) = &e.dedup_key else { return Ok(()) };
    if e.is_decision() {
        conn.prepare_cached(
            "INSERT INTO decisions (receiver, key, at, execution) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (receiver, key) DO UPDATE SET at = excluded.at, execution = excluded.execution",
        )?
        .execute(params![&e.receiver.as_bytes()[..], &key.as_bytes()[..], e.at, &e.id.as_bytes()[..]])?;
    } else if replaced {
        conn.prepare_cached("DELETE FROM decisions WHERE receiver = ?1 AND key = ?2 AND execution = ?3")?
            .execute(params![&e.receiver.as_bytes()[..], &key.as_bytes()[..], &e.id.as_bytes()[..]])?;
    }
    Ok(())
}

/// The receiver as stored now, inside the writer's transaction.
fn read_receiver(conn: &Connection, id: ReceiverId) -> Result<Option<Receiver>, Failure> {
    let row = conn
        .prepare_cached(
            "SELECT id, project, name, driver, config, enabled, token_generation, created, updated, revision, \
             verify FROM receivers WHERE id = ?1",
        )?
        .query_row([id.to_string()], |row| {
            Ok(ReceiverRow {
                id: row.get(0)?,
                project: row.get(1)?,
                name: row.get(2)?,
                driver: row.get(3)?,
                config: row.get(4)?,
                enabled: row.get(5)?,
                token_generation: row.get(6)?,
                created: row.get(7)?,
                updated: row.get(8)?,
                revision: row.get(9)?,
                verify: row.get(10)?,
            })
        })
        .optional()?;
    row.map(ReceiverRow::into_domain).transpose().map_err(Failure::Own)
}

fn write_state(conn: &Connection, state: &StateWrite) -> rusqlite::Result<()> {
    match state {
        StateWrite::LocalScale { backend, service, scale } => {
            conn.prepare_cached(
                "INSERT INTO local_scales (backend, service, scale) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (backend, service) DO UPDATE SET scale = excluded.scale",
            )?
            .execute(params![backend, service, scale])?;
        }
        StateWrite::LocalImage { backend, service, image } => {
            conn.prepare_cached(
                "INSERT INTO local_images (backend, service, image) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (backend, service) DO UPDATE SET image = excluded.image",
            )?
            .execute(params![backend, service, image])?;
        }
    }
    Ok(())
}

/// Replaces the execution if it was recorded before (an intent becoming its outcome), else adds it.
fn record(conn: &Connection, e: &Execution) -> Result<Done, Failure> {
    let alerts = alerts_to_json(&e.alerts);
    let service = e.service.as_ref().map(|s| s.as_str());
    let dedup_key = e.dedup_key.as_ref().map(|k| &k.as_bytes()[..]);
    let outcome = e.outcome.as_str();
    let (from, to) = e.effect.scale();
    let job = e.effect.job().map(|j| j.as_bytes().to_vec());
    let values: [&dyn rusqlite::ToSql; 14] = [
        &&e.id.as_bytes()[..],
        &&e.receiver.as_bytes()[..],
        &service,
        &e.at,
        &e.source,
        &outcome,
        &from,
        &to,
        &e.reason,
        &e.detail,
        &e.dry_run,
        &alerts,
        &dedup_key,
        &job,
    ];
    let replaced = conn
        .prepare_cached(
            "UPDATE executions SET service = ?3, at = ?4, source = ?5, outcome = ?6, scale_from = ?7, scale_to = ?8, \
             reason = ?9, detail = ?10, dry_run = ?11, alerts = ?12, dedup_key = ?13, job = ?14 \
             WHERE receiver = ?2 AND id = ?1",
        )?
        .execute(&values[..])?;
    record_decision(conn, e, replaced > 0)?;
    if replaced > 0 {
        return Ok(Done::Written);
    }
    conn.prepare_cached(
        "INSERT INTO executions (id, receiver, service, at, source, outcome, scale_from, scale_to, reason, detail, \
         dry_run, alerts, dedup_key, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(&values[..])?;
    Ok(Done::Inserted)
}
