//! Reads of access control's tables: API tokens, projects, the audit log.

use sqlx::Row;

use super::{
    super::{
        rows::{ApiTokenRow, API_TOKEN_COLUMNS},
        ApiToken, AuditEntry, StoreError, StoreResult, StoredProject,
    },
    SqliteStore,
};
use crate::domain::{ApiTokenId, AuditId, ProjectName};

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl SqliteStore {
    pub(super) async fn api_token_by_id(&self, id: ApiTokenId) -> StoreResult<Option<ApiToken>> {
        let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = ?");
        sqlx::query_as::<_, ApiTokenRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(ApiTokenRow::into_domain)
            .transpose()
    }

    pub(super) async fn api_tokens_of(&self, project: Option<&ProjectName>) -> StoreResult<Vec<ApiToken>> {
        let rows = match project {
            Some(p) => {
                let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE project = ? ORDER BY created, id");
                sqlx::query_as::<_, ApiTokenRow>(&sql).bind(p.as_str()).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens ORDER BY created, id");
                sqlx::query_as::<_, ApiTokenRow>(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.into_iter().map(ApiTokenRow::into_domain).collect()
    }

    pub(super) async fn stored_projects(&self) -> StoreResult<Vec<StoredProject>> {
        let rows =
            sqlx::query("SELECT name, backend, created FROM projects ORDER BY name").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                Ok(StoredProject {
                    name: ProjectName::parse(&name).map_err(|_| corrupt("project name"))?,
                    backend: row.try_get("backend")?,
                    created: row.try_get("created")?,
                })
            })
            .collect()
    }

    pub(super) async fn audit_entries(
        &self,
        project: Option<&ProjectName>,
        limit: u32,
        before: Option<AuditId>,
    ) -> StoreResult<Vec<AuditEntry>> {
        // An id past every UUIDv7 when no marker is given.
        let before = before.map(|b| b.as_bytes().to_vec()).unwrap_or_else(|| vec![0xff; 16]);
        let columns = "id, at, actor, actor_id, project, action, target, detail";
        // `?1 IS NULL`: every project's entries.
        let sql = format!(
            "SELECT {columns} FROM audit WHERE (?1 IS NULL OR project = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3"
        );
        let rows = sqlx::query(&sql)
            .bind(project.map(|p| p.as_str().to_owned()))
            .bind(before)
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
                    project: project
                        .map(|p| ProjectName::parse(&p))
                        .transpose()
                        .map_err(|_| corrupt("audit project"))?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
