//! Each write's SQL, in its own transaction where it touches more than one row.

use sqlx::{postgres::PgRow, PgPool, Postgres, Row, Transaction};

use super::{
    super::{
        rows::{alerts_to_json, config_to_json, job_from_json, job_to_json, verify_to_json, ReceiverRow},
        ApiToken, AuditEntry, ReceiverEdit, SigningKey, StateWrite, StoreError, StoreResult, StoredProject,
    },
    CHANNEL, RECEIVER_COLUMNS,
};
use crate::domain::{now_millis, ApiTokenId, AuditId, Execution, Job, Millis, ProjectName, Receiver, ReceiverId};

/// A unique-index violation is the caller's conflict, named by `what`; anything else stays.
fn unique(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => e.into(),
    }
}

fn name_taken(r: &Receiver) -> String {
    // Rancher's sentence, then where.
    format!("Cannot have duplicate webhook name, webhook {} already exists in project {}", r.name.as_str(), r.project)
}

/// Tells every replica (this one too) that something it caches changed, when the
/// transaction commits.
async fn announce(tx: &mut Transaction<'_, Postgres>, what: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(what).execute(&mut **tx).await?;
    Ok(())
}

pub async fn insert_receiver(pool: &PgPool, r: &Receiver) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO receivers (id, project, name, driver, config, enabled, token_generation, created, updated, \
         revision, verify) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(r.id.to_string())
    .bind(r.project.as_str())
    .bind(r.name.as_str())
    .bind(r.config.driver().as_str())
    .bind(config_to_json(&r.config))
    .bind(r.enabled)
    .bind(i64::from(r.token_generation))
    .bind(r.created)
    .bind(r.updated)
    .bind(i64::from(r.revision))
    .bind(verify_to_json(r.verify.as_ref()))
    .execute(pool)
    .await
    .map_err(|e| unique(e, || name_taken(r)))?;
    Ok(())
}

/// Applies `edit` to the receiver as stored, its row locked: concurrent edits on any
/// replica each build on the one before.
pub async fn edit_receiver(pool: &PgPool, id: ReceiverId, edit: ReceiverEdit) -> StoreResult<Receiver> {
    let mut tx = pool.begin().await?;
    let stored =
        sqlx::query_as::<_, ReceiverRow>(&format!("SELECT {RECEIVER_COLUMNS} FROM receivers WHERE id = $1 FOR UPDATE"))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?
            .into_domain()?;
    let mut r = stored.clone();
    edit(&mut r);
    let r = Receiver {
        id: stored.id,
        project: stored.project,
        created: stored.created,
        revision: stored.revision + 1,
        updated: now_millis(),
        ..r
    };
    sqlx::query(
        "UPDATE receivers SET name = $1, config = $2, enabled = $3, token_generation = $4, updated = $5, \
         revision = $6, verify = $8 WHERE id = $7",
    )
    .bind(r.name.as_str())
    .bind(config_to_json(&r.config))
    .bind(r.enabled)
    .bind(i64::from(r.token_generation))
    .bind(r.updated)
    .bind(i64::from(r.revision))
    .bind(r.id.to_string())
    .bind(verify_to_json(r.verify.as_ref()))
    .execute(&mut *tx)
    .await
    .map_err(|e| unique(e, || name_taken(&r)))?;
    tx.commit().await?;
    Ok(r)
}

/// Deletes a receiver and its history; returns whether it existed and how many executions went.
pub async fn delete_receiver(pool: &PgPool, id: ReceiverId) -> StoreResult<(bool, u64)> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM receivers WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?;
    let bytes = &id.as_bytes()[..];
    let executions = sqlx::query("DELETE FROM executions WHERE receiver = $1").bind(bytes).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM decisions WHERE receiver = $1").bind(bytes).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((deleted.rows_affected() > 0, executions.rows_affected()))
}

pub async fn write_state(tx: &mut Transaction<'_, Postgres>, state: &StateWrite) -> StoreResult<()> {
    match state {
        StateWrite::LocalScale { backend, service, scale } => {
            sqlx::query(
                "INSERT INTO local_scales (backend, service, scale) VALUES ($1, $2, $3) \
                 ON CONFLICT (backend, service) DO UPDATE SET scale = excluded.scale",
            )
            .bind(backend)
            .bind(service)
            .bind(i64::from(*scale))
            .execute(&mut **tx)
            .await?;
        }
        StateWrite::LocalImage { backend, service, image } => {
            sqlx::query(
                "INSERT INTO local_images (backend, service, image) VALUES ($1, $2, $3) \
                 ON CONFLICT (backend, service) DO UPDATE SET image = excluded.image",
            )
            .bind(backend)
            .bind(service)
            .bind(image)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Records an execution and the state it changed in one transaction; true when the row is
/// new (not an intent re-recorded as its outcome).
pub async fn record_execution(pool: &PgPool, e: &Execution, state: Option<&StateWrite>) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    if let Some(state) = state {
        write_state(&mut tx, state).await?;
    }
    let inserted = record(&mut tx, e).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Inserts or replaces the execution, and keeps the decision and the service's last change.
async fn record(tx: &mut Transaction<'_, Postgres>, e: &Execution) -> StoreResult<bool> {
    let (from, to) = e.effect.scale();
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO executions (id, receiver, service, at, source, outcome, scale_from, scale_to, reason, detail, \
         dry_run, alerts, dedup_key, job) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET service = excluded.service, at = excluded.at, source = excluded.source, \
         outcome = excluded.outcome, scale_from = excluded.scale_from, scale_to = excluded.scale_to, \
         reason = excluded.reason, detail = excluded.detail, dry_run = excluded.dry_run, alerts = excluded.alerts, \
         dedup_key = excluded.dedup_key, job = excluded.job \
         RETURNING (xmax = 0)",
    )
    .bind(&e.id.as_bytes()[..])
    .bind(&e.receiver.as_bytes()[..])
    .bind(e.service.as_ref().map(|s| s.as_str()))
    .bind(e.at)
    .bind(&e.source)
    .bind(e.outcome.as_str())
    .bind(from.map(i64::from))
    .bind(to.map(i64::from))
    .bind(&e.reason)
    .bind(&e.detail)
    .bind(e.dry_run)
    .bind(alerts_to_json(&e.alerts))
    .bind(e.dedup_key.as_ref().map(|k| k.as_bytes().to_vec()))
    .bind(e.effect.job().map(|j| j.as_bytes().to_vec()))
    .fetch_one(&mut **tx)
    .await?;
    if let (Some(service), true) = (&e.service, e.is_change()) {
        sqlx::query("INSERT INTO service_changes (service, at) VALUES ($1, $2)")
            .bind(service.as_str())
            .bind(e.at)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(key) = &e.dedup_key {
        let (receiver, key, id) = (&e.receiver.as_bytes()[..], &key.as_bytes()[..], &e.id.as_bytes()[..]);
        if e.is_decision() {
            sqlx::query(
                "INSERT INTO decisions (receiver, key, at, execution) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (receiver, key) DO UPDATE SET at = excluded.at, execution = excluded.execution",
            )
            .bind(receiver)
            .bind(key)
            .bind(e.at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        } else if !inserted {
            // An intent re-recorded as a failure is no decision any more.
            sqlx::query("DELETE FROM decisions WHERE receiver = $1 AND key = $2 AND execution = $3")
                .bind(receiver)
                .bind(key)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(inserted)
}

pub async fn insert_signing_key(pool: &PgPool, key: &SigningKey) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, secret, created, retired) VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(&key.kid)
    .bind(hex::encode(&key.secret))
    .bind(key.created)
    .bind(key.retired)
    .execute(&mut *tx)
    .await?;
    announce(&mut tx, "keys").await?;
    Ok(tx.commit().await?)
}

pub async fn retire_signing_keys(pool: &PgPool, keep: &str, at: Millis) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("UPDATE signing_keys SET retired = $2 WHERE retired IS NULL AND kid <> $1")
        .bind(keep)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    announce(&mut tx, "keys").await?;
    tx.commit().await?;
    Ok(n.rows_affected())
}

pub async fn insert_api_token(pool: &PgPool, t: &ApiToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, name, hash, role, project, created, expires, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(t.id.to_string())
    .bind(&t.name)
    .bind(&t.hash)
    .bind(t.role.as_str())
    .bind(t.project.as_ref().map(|p| p.as_str().to_owned()))
    .bind(t.created)
    .bind(t.expires)
    .bind(t.created_by.map(|id| id.to_string()))
    .execute(pool)
    .await
    .map_err(|e| unique(e, || "this API token already exists".to_owned()))?;
    Ok(())
}

pub async fn insert_project(pool: &PgPool, p: &StoredProject) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO projects (name, backend, created) VALUES ($1, $2, $3)")
        .bind(p.name.as_str())
        .bind(&p.backend)
        .bind(p.created)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique(e, || format!("there is already a project {}", p.name)))?;
    announce(&mut tx, "projects").await?;
    Ok(tx.commit().await?)
}

/// Deletes a project and the tokens scoped to it; `Conflict` while it has receivers.
pub async fn delete_project(pool: &PgPool, name: &ProjectName) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    // The row lock orders this against a receiver created in the project meanwhile.
    let exists = sqlx::query("SELECT name FROM projects WHERE name = $1 FOR UPDATE")
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    let receivers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receivers WHERE project = $1")
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if receivers > 0 {
        return Err(StoreError::Conflict(format!(
            "project {name} still has {receivers} receiver(s); delete them first"
        )));
    }
    if !exists {
        return Ok(false);
    }
    sqlx::query("DELETE FROM projects WHERE name = $1").bind(name.as_str()).execute(&mut *tx).await?;
    // A project made again under this name must not find old tokens scoped to it.
    sqlx::query("DELETE FROM api_tokens WHERE project = $1").bind(name.as_str()).execute(&mut *tx).await?;
    announce(&mut tx, "projects").await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn record_audit(pool: &PgPool, a: &AuditEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit (id, at, actor, actor_id, project, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&a.id.as_bytes()[..])
    .bind(a.at)
    .bind(&a.actor)
    .bind(a.actor_id.to_string())
    .bind(a.project.as_ref().map(|p| p.as_str().to_owned()))
    .bind(&a.action)
    .bind(&a.target)
    .bind(&a.detail)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn list_audit(
    pool: &PgPool,
    project: Option<&ProjectName>,
    limit: u32,
    before: Option<AuditId>,
) -> StoreResult<Vec<AuditEntry>> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    // An id past every UUIDv7 when no marker is given.
    let before = before.map(|b| b.as_bytes().to_vec()).unwrap_or_else(|| vec![0xff; 16]);
    let rows = sqlx::query(
        "SELECT id, at, actor, actor_id, project, action, target, detail FROM audit \
         WHERE ($1::TEXT IS NULL OR project = $1) AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(project.map(|p| p.as_str().to_owned()))
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            let id: Vec<u8> = row.try_get("id")?;
            let actor_id: String = row.try_get("actor_id")?;
            let project: Option<String> = row.try_get("project")?;
            Ok(AuditEntry {
                id: AuditId::from_slice(&id).ok_or_else(|| corrupt("audit id"))?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                actor_id: ApiTokenId::parse(&actor_id).ok_or_else(|| corrupt("audit actor id"))?,
                project: project.map(|p| ProjectName::parse(&p)).transpose().map_err(|_| corrupt("audit project"))?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}

/// Inserts or updates a job (its lease untouched), with the execution that started it;
/// true when that execution's row is new.
pub async fn save_job(pool: &PgPool, job: &Job, execution: Option<&Execution>) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO jobs (id, receiver, state, created, body) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
    )
    .bind(&job.id.as_bytes()[..])
    .bind(&job.receiver.as_bytes()[..])
    .bind(job.state.as_str())
    .bind(job.created)
    .bind(job_to_json(job))
    .execute(&mut *tx)
    .await?;
    let inserted = match execution {
        Some(e) => record(&mut tx, e).await?,
        None => false,
    };
    tx.commit().await?;
    Ok(inserted)
}

pub fn jobs_from_rows(rows: Vec<PgRow>) -> StoreResult<Vec<Job>> {
    rows.into_iter()
        .map(|row| job_from_json(&row.try_get::<Vec<u8>, _>("id")?, &row.try_get::<String, _>("body")?))
        .collect()
}
