//! PostgreSQL for tests: `scripts/test.sh` starts a throwaway cluster and exports its admin
//! URL as `HOOKD_TEST_POSTGRES`; each test gets a database of its own. With
//! `HOOKD_TEST_STORE=postgres`, every `spawn_app` runs on PostgreSQL instead of SQLite.

use sqlx::{Connection, PgConnection};

pub fn admin_url() -> String {
    std::env::var("HOOKD_TEST_POSTGRES")
        .expect("HOOKD_TEST_POSTGRES names a PostgreSQL cluster (./scripts/postgres.sh start DIR prints one)")
}

/// Whether this run puts every test app on PostgreSQL.
pub fn suite_on_postgres() -> bool {
    std::env::var("HOOKD_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// A new, empty database on the test cluster (or on `admin`'s); returns its URL.
pub async fn fresh_database_on(admin: &str) -> String {
    let name = format!("hookd_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect(&format!("{admin}/postgres")).await.expect("the test cluster answers");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("a new database");
    let _ = conn.close().await;
    format!("{admin}/{name}")
}

pub async fn fresh_database() -> String {
    fresh_database_on(&admin_url()).await
}
