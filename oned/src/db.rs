//! Durable storage through sqlx: SQLite (WAL) by default, PostgreSQL by URL.
//!
//! The schema is deliberately small (see `migrations/`): one row per object with its document
//! as JSON. oned keeps every pool in memory and writes through: a change is committed here, in
//! one transaction with everything else the same API call changed, before it is applied in
//! memory and acknowledged.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One object row to write.
#[derive(Debug, Clone)]
pub struct Row_ {
    pub kind: &'static str,
    pub oid: i64,
    pub name: String,
    pub uid: i64,
    pub gid: i64,
    pub body: String,
}

/// Everything one API call changed, written in one transaction.
#[derive(Debug, Default)]
pub struct WriteSet {
    pub puts: Vec<Row_>,
    pub deletes: Vec<(&'static str, i64)>,
    pub sequences: Vec<(&'static str, i64)>,
    pub system: Vec<(String, String)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.sequences.is_empty()
            && self.system.is_empty()
    }
}

pub struct Db {
    pool: AnyPool,
    pub backend: Backend,
}

/// A stored row as loaded at start.
pub struct LoadedRow {
    pub kind: String,
    pub oid: i64,
    pub body: String,
}

impl Db {
    /// Opens (creating if needed) the database and runs the embedded migrations.
    /// `sync_full` selects `synchronous=FULL` for SQLite (survives power loss, slower commits).
    pub async fn open(url: &str, sync_full: bool) -> Result<Db, DbError> {
        install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let open_err = |source| DbError::Open {
            url: redact(url),
            source,
        };
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            let sync_pragma = if sync_full {
                "PRAGMA synchronous=FULL"
            } else {
                "PRAGMA synchronous=NORMAL"
            };
            // One writer connection is all SQLite can use; readers come from memory anyway.
            opts = opts.max_connections(1).after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode=WAL").await?;
                    conn.execute(sync_pragma).await?;
                    conn.execute("PRAGMA busy_timeout=10000").await?;
                    Ok(())
                })
            });
        } else {
            opts = opts.max_connections(4);
        }
        let pool = opts.connect(url).await.map_err(open_err)?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Db { pool, backend })
    }

    pub async fn load_objects(&self) -> Result<Vec<LoadedRow>, DbError> {
        let rows = sqlx::query("SELECT kind, oid, body FROM objects ORDER BY kind, oid")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(LoadedRow {
                    kind: r.try_get(0)?,
                    oid: r.try_get(1)?,
                    body: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub async fn load_sequences(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT kind, next_oid FROM sequences")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn load_system(&self, name: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT body FROM system_attributes WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Writes a change set atomically.
    pub async fn write(&self, set: &WriteSet) -> Result<(), DbError> {
        if set.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for r in &set.puts {
            sqlx::query(
                "INSERT INTO objects (kind, oid, name, uid, gid, body) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (kind, oid) DO UPDATE SET name = excluded.name, uid = excluded.uid, \
                 gid = excluded.gid, body = excluded.body",
            )
            .bind(r.kind)
            .bind(r.oid)
            .bind(r.name.clone())
            .bind(r.uid)
            .bind(r.gid)
            .bind(r.body.clone())
            .execute(&mut *tx)
            .await?;
        }
        for (kind, oid) in &set.deletes {
            sqlx::query("DELETE FROM objects WHERE kind = $1 AND oid = $2")
                .bind(*kind)
                .bind(*oid)
                .execute(&mut *tx)
                .await?;
        }
        for (kind, next) in &set.sequences {
            sqlx::query(
                "INSERT INTO sequences (kind, next_oid) VALUES ($1, $2) \
                 ON CONFLICT (kind) DO UPDATE SET next_oid = excluded.next_oid",
            )
            .bind(*kind)
            .bind(*next)
            .execute(&mut *tx)
            .await?;
        }
        for (name, body) in &set.system {
            sqlx::query(
                "INSERT INTO system_attributes (name, body) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body",
            )
            .bind(name.clone())
            .bind(body.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hides the password in a database URL before it reaches a message or a log.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://one:secret@127.0.0.1:5432/one"),
            "postgres://one:***@127.0.0.1:5432/one"
        );
        assert_eq!(redact("sqlite:///x/one.db"), "sqlite:///x/one.db");
    }

    #[tokio::test]
    async fn write_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("oned-db-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let db = Db::open(&url, false).await.unwrap();
        let mut set = WriteSet::default();
        set.puts.push(Row_ {
            kind: "vm",
            oid: 7,
            name: "a".into(),
            uid: 0,
            gid: 0,
            body: "{}".into(),
        });
        set.sequences.push(("vm", 8));
        db.write(&set).await.unwrap();
        let rows = db.load_objects().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].oid, 7);
        assert_eq!(db.load_sequences().await.unwrap(), vec![("vm".into(), 8)]);
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
