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
        let rows =
            sqlx::query("SELECT kind, oid, body FROM objects WHERE kind <> $1 ORDER BY kind, oid")
                .bind(SEQUENCE_KIND)
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
        let rows = sqlx::query("SELECT name, body FROM objects WHERE kind = $1")
            .bind(SEQUENCE_KIND)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let kind: String = r.try_get(0)?;
            let body: String = r.try_get(1)?;
            let next = body.trim().parse::<i64>().map_err(|e| {
                sqlx::Error::Decode(format!("sequence of {kind} is not a number: {e}").into())
            })?;
            out.push((kind, next));
        }
        Ok(out)
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

    /// Writes a change set atomically. The common case (objects and sequences, no deletes)
    /// is one multi-row upsert, which SQLite commits atomically on its own: one round trip to
    /// the database instead of four, which is what bounds allocations per second.
    pub async fn write(&self, set: &WriteSet) -> Result<(), DbError> {
        if set.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<Row_> = set.puts.clone();
        rows.extend(
            set.sequences
                .iter()
                .map(|(kind, next)| sequence_row(kind, *next)),
        );
        let chunks: Vec<&[Row_]> = rows.chunks(UPSERT_ROWS).collect();
        let single = chunks.len() <= 1 && set.deletes.is_empty() && set.system.is_empty();
        if single {
            if let Some(chunk) = chunks.first() {
                upsert(chunk).execute(&self.pool).await?;
            }
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in chunks {
            upsert(chunk).execute(&mut *tx).await?;
        }
        for (kind, oid) in &set.deletes {
            sqlx::query("DELETE FROM objects WHERE kind = $1 AND oid = $2")
                .bind(*kind)
                .bind(*oid)
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

    /// The connection pool, for modules with tables of their own (host recovery log).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Rows of this kind hold the next id of each object kind (`name` = the kind, `body` = the
/// next id), so they are written in the same statement as the objects that used the ids.
pub const SEQUENCE_KIND: &str = "_sequence";

/// Rows per upsert statement: 6 parameters each, well under every backend's limit.
const UPSERT_ROWS: usize = 1000;

fn sequence_row(kind: &str, next: i64) -> Row_ {
    // The key must be unique per kind; the kind name's bytes make a stable small number.
    let oid = kind
        .bytes()
        .fold(0i64, |acc, b| acc.wrapping_mul(131).wrapping_add(b as i64))
        & 0x7fff_ffff;
    Row_ {
        kind: SEQUENCE_KIND,
        oid,
        name: kind.to_string(),
        uid: 0,
        gid: 0,
        body: next.to_string(),
    }
}

fn upsert(rows: &[Row_]) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    let mut sql = String::from("INSERT INTO objects (kind, oid, name, uid, gid, body) VALUES ");
    for i in 0..rows.len() {
        let b = i * 6;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    sql.push_str(
        " ON CONFLICT (kind, oid) DO UPDATE SET name = excluded.name, uid = excluded.uid, \
         gid = excluded.gid, body = excluded.body",
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(r.kind)
            .bind(r.oid)
            .bind(r.name.clone())
            .bind(r.uid)
            .bind(r.gid)
            .bind(r.body.clone());
    }
    q
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
        // A set with a delete goes through an explicit transaction.
        let mut set = WriteSet::default();
        set.deletes.push(("vm", 7));
        set.sequences.push(("vm", 9));
        db.write(&set).await.unwrap();
        assert!(db.load_objects().await.unwrap().is_empty());
        assert_eq!(db.load_sequences().await.unwrap(), vec![("vm".into(), 9)]);
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sequence_keys_are_distinct_per_kind() {
        let kinds = [
            "user",
            "group",
            "cluster",
            "host",
            "datastore",
            "image",
            "vnet",
            "vmtemplate",
            "vm",
            "acl",
        ];
        let mut oids: Vec<i64> = kinds.iter().map(|k| sequence_row(k, 0).oid).collect();
        oids.sort_unstable();
        oids.dedup();
        assert_eq!(oids.len(), kinds.len());
    }
}
