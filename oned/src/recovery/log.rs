//! The recovery log and the episodes, in their own SQL tables
//! (`migrations/*/0004_host_recovery.sql`). Only the recovery task writes them; the API reads
//! the log straight from SQL (it is small, bounded, and read rarely).

use crate::db::Db;
use one_proto::xml::XmlWriter;
use sqlx::Row;

/// One recovery action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: i64,
    pub host_id: i64,
    pub host_name: String,
    /// -1 for host-level actions (fence).
    pub vm_id: i64,
    pub time: i64,
    /// fence, resched, recreate, leave.
    pub action: String,
    /// success, failure, skipped.
    pub outcome: String,
    pub message: String,
}

impl Record {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("RECOVERY_RECORD")
            .num("ID", self.id)
            .num("HOST_ID", self.host_id)
            .text("HOST_NAME", &self.host_name)
            .num("VM_ID", self.vm_id)
            .num("TIMESTAMP", self.time)
            .text("ACTION", &self.action)
            .text("OUTCOME", &self.outcome)
            .text("MESSAGE", &self.message)
            .close("RECOVERY_RECORD");
    }
}

/// Where a host's recovery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// In ERROR, within the grace period (or recovery is off for it).
    Waiting,
    /// The fence command was started (a restart runs it again: fencing is idempotent).
    Fencing,
    /// Fenced; the VMs are being recovered (a restart goes over them again; done ones are
    /// no longer concerned).
    Recovering,
    /// Over, successfully or not; nothing more until the host leaves ERROR.
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Fencing => "fencing",
            Stage::Recovering => "recovering",
            Stage::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Stage {
        match s {
            "fencing" => Stage::Fencing,
            "recovering" => Stage::Recovering,
            "done" => Stage::Done,
            _ => Stage::Waiting,
        }
    }
}

/// A host seen in ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    pub host_id: i64,
    /// When recovery first saw the host in ERROR (milliseconds since the epoch).
    pub since_ms: i64,
    pub stage: Stage,
}

pub async fn load_episodes(db: &Db) -> Result<Vec<Episode>, sqlx::Error> {
    let rows = sqlx::query("SELECT host_id, since_ms, stage FROM host_recovery_episode")
        .fetch_all(db.pool())
        .await?;
    rows.into_iter()
        .map(|r| {
            let stage: String = r.try_get(2)?;
            Ok(Episode {
                host_id: r.try_get(0)?,
                since_ms: r.try_get(1)?,
                stage: Stage::parse(&stage),
            })
        })
        .collect()
}

pub async fn save_episode(db: &Db, e: &Episode, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO host_recovery_episode (host_id, since_ms, stage, updated) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (host_id) DO UPDATE SET since_ms = excluded.since_ms, stage = excluded.stage, \
         updated = excluded.updated",
    )
    .bind(e.host_id)
    .bind(e.since_ms)
    .bind(e.stage.as_str())
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn end_episode(db: &Db, host_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM host_recovery_episode WHERE host_id = $1")
        .bind(host_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The id the next record gets.
pub async fn next_id(db: &Db) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT MAX(id) FROM host_recovery_log")
        .fetch_one(db.pool())
        .await?;
    let max: Option<i64> = row.try_get(0)?;
    Ok(max.map_or(0, |m| m + 1))
}

/// Writes a record and drops the ones beyond `retention` (the newest are kept).
pub async fn append(db: &Db, r: &Record, retention: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO host_recovery_log (id, host_id, host_name, vm_id, time, action, outcome, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(r.id)
    .bind(r.host_id)
    .bind(r.host_name.clone())
    .bind(r.vm_id)
    .bind(r.time)
    .bind(r.action.clone())
    .bind(r.outcome.clone())
    .bind(r.message.clone())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM host_recovery_log WHERE id <= $1")
        .bind(r.id - retention.max(1))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Records with `id >= start`, of host `host_id` (-1: every host), oldest first, at most
/// `count` (< 0: all).
pub async fn query(
    db: &Db,
    host_id: i64,
    start: i64,
    count: i64,
) -> Result<Vec<Record>, sqlx::Error> {
    let limit = if count < 0 { i64::MAX } else { count };
    let rows = sqlx::query(
        "SELECT id, host_id, host_name, vm_id, time, action, outcome, message \
         FROM host_recovery_log WHERE id >= $1 AND ($2 < 0 OR host_id = $2) ORDER BY id LIMIT $3",
    )
    .bind(start)
    .bind(host_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Record {
                id: r.try_get(0)?,
                host_id: r.try_get(1)?,
                host_name: r.try_get(2)?,
                vm_id: r.try_get(3)?,
                time: r.try_get(4)?,
                action: r.try_get(5)?,
                outcome: r.try_get(6)?,
                message: r.try_get(7)?,
            })
        })
        .collect()
}

/// `<HOST_RECOVERY_POOL>` with the records.
pub fn pool_xml(records: &[Record]) -> String {
    let mut w = XmlWriter::new();
    w.open("HOST_RECOVERY_POOL");
    for r in records {
        r.write_xml(&mut w);
    }
    w.close("HOST_RECOVERY_POOL");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, host_id: i64) -> Record {
        Record {
            id,
            host_id,
            host_name: format!("h{host_id}"),
            vm_id: -1,
            time: 100 + id,
            action: "fence".into(),
            outcome: "success".into(),
            message: "a <b> & c".into(),
        }
    }

    #[tokio::test]
    async fn log_is_bounded_filtered_and_episodes_persist() {
        let dir = std::env::temp_dir().join(format!("oned-recovery-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/one.db?mode=rwc", dir.display());
        let db = Db::open(&url, false).await.unwrap();
        assert_eq!(next_id(&db).await.unwrap(), 0);
        for id in 0..6 {
            append(&db, &rec(id, id % 2), 4).await.unwrap();
        }
        assert_eq!(next_id(&db).await.unwrap(), 6);
        let all = query(&db, -1, -1, -1).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.id).collect::<Vec<_>>(),
            [2, 3, 4, 5],
            "retention keeps the newest"
        );
        let h1 = query(&db, 1, 0, -1).await.unwrap();
        assert_eq!(h1.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 5]);
        let page = query(&db, -1, 3, 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(page[0], rec(3, 1));
        let xml = pool_xml(&page[..1]);
        assert_eq!(
            xml,
            "<HOST_RECOVERY_POOL><RECOVERY_RECORD><ID>3</ID><HOST_ID>1</HOST_ID>\
             <HOST_NAME>h1</HOST_NAME><VM_ID>-1</VM_ID><TIMESTAMP>103</TIMESTAMP>\
             <ACTION>fence</ACTION><OUTCOME>success</OUTCOME><MESSAGE>a &lt;b&gt; &amp; c</MESSAGE>\
             </RECOVERY_RECORD></HOST_RECOVERY_POOL>"
        );

        let e = Episode {
            host_id: 3,
            since_ms: 50,
            stage: Stage::Waiting,
        };
        save_episode(&db, &e, 50).await.unwrap();
        let e2 = Episode {
            stage: Stage::Recovering,
            ..e
        };
        save_episode(&db, &e2, 60).await.unwrap();
        assert_eq!(load_episodes(&db).await.unwrap(), vec![e2]);
        end_episode(&db, 3).await.unwrap();
        assert!(load_episodes(&db).await.unwrap().is_empty());
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
