//! The embedded store: one SQLite database in WAL mode holding events, templates,
//! checkpoints, counters, the self-healing loop's incidents ([`incidents`]) and its
//! hash-chained audit trail ([`trail`]). Start with [`Store::open`]
//! ([`Store::open_read_only`] for inspecting a data directory without changing it).
//!
//! SQLite is synchronous: the agent owns one [`Store`] on a dedicated thread and talks to it
//! through a channel (rusqlite connections are not shared across threads). Schema changes are
//! numbered migrations applied in order and recorded in `PRAGMA user_version`.

use std::path::{Path, PathBuf};

use opsloop_core::Event;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub mod incidents;
pub mod trail;

pub use incidents::{IncidentCursor, IncidentPage, IncidentQuery, StoredIncident};
pub use trail::{
    GENESIS_HASH, TrailAppend, TrailFault, TrailFaultKind, TrailRecord, TrailVerification,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored event did not decode.
    #[error("store: event {seq} is corrupt: {source}")]
    Corrupt {
        /// Its sequence number.
        seq: i64,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A stored incident did not decode.
    #[error("store: incident {id} is corrupt: {source}")]
    CorruptIncident {
        /// Its id.
        id: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The audit trail cannot be appended to or read as it stands.
    #[error("audit trail damaged: {reason}")]
    TrailDamaged {
        /// What is wrong.
        reason: String,
    },
    /// There is no store in the directory (read-only opening creates none).
    #[error("no store at {path}")]
    Missing {
        /// The database file looked for.
        path: PathBuf,
    },
    /// The database was written by a newer opsloop.
    #[error("store schema version {found} is newer than this opsloop ({supported})")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// Numbered migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: events, templates, checkpoints, counters.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        subject TEXT,
        time_ms INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        body TEXT NOT NULL
     );
     CREATE INDEX events_type_time ON events(type, time_ms);
     CREATE INDEX events_subject ON events(subject);
     CREATE INDEX events_time ON events(time_ms);
     CREATE TABLE templates (
        id TEXT PRIMARY KEY,
        template TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen_ms INTEGER,
        last_seen_ms INTEGER
     );
     CREATE TABLE checkpoints (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL);
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 2: durable consumers of the event log (the embedded bus's outbox cursors).
    "CREATE TABLE consumers (name TEXT PRIMARY KEY, acked_seq INTEGER NOT NULL, updated_ms INTEGER NOT NULL);",
    // 3: when each event was stored, which retention goes by (an event's own `time` is the
    // log record's, and may be years old or wrongly dated). Rows stored before this version
    // have no record of their insert time, so they take their `time_ms`: they age out as
    // they did before the upgrade, and every row has an ingestion time.
    "ALTER TABLE events ADD COLUMN ingested_ms INTEGER;
     UPDATE events SET ingested_ms = time_ms;
     CREATE INDEX events_ingested ON events(ingested_ms);",
    // 4: the self-healing loop's incidents and its hash-chained audit trail (see `trail`).
    // The trail refuses UPDATE and DELETE; `audit_head` keeps its last seq and hash so that
    // removing the last records shows.
    "CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        playbook TEXT NOT NULL,
        key TEXT NOT NULL,
        target TEXT,
        state TEXT NOT NULL,
        mode TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        data TEXT NOT NULL
     );
     CREATE INDEX incidents_created ON incidents(created_ms, id);
     CREATE INDEX incidents_state ON incidents(state, created_ms);
     CREATE INDEX incidents_playbook ON incidents(playbook, created_ms);
     CREATE INDEX incidents_key ON incidents(key, created_ms);
     CREATE TABLE audit_trail (
        seq INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        incident_id TEXT,
        actor TEXT,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE INDEX audit_trail_incident ON audit_trail(incident_id);
     CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
     CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
     CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
];

/// A filter over stored events. Empty fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only this type.
    pub kind: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Time at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Time before (Unix ms).
    pub until_ms: Option<i64>,
    /// Resume after this cursor (from a previous page).
    pub after: Option<i64>,
    /// Page size (1..=1000; default 100).
    pub limit: Option<usize>,
}

/// One page of events, oldest first.
#[derive(Clone, Debug)]
pub struct EventPage {
    /// The events.
    pub events: Vec<Event>,
    /// Cursor for the next page, when there may be more.
    pub next: Option<i64>,
}

/// A template as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTemplate {
    /// Template id.
    pub id: String,
    /// Template text.
    pub template: String,
    /// Records seen.
    pub count: u64,
    /// First record time, Unix ms.
    pub first_seen_ms: Option<i64>,
    /// Last record time, Unix ms.
    pub last_seen_ms: Option<i64>,
}

/// The store.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) `DIR/opsloop.db` in WAL mode and migrates it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(dir.join("opsloop.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::init(conn)
    }

    /// Opens `DIR/opsloop.db` read-only, as it stands: nothing is created or migrated, and a
    /// missing database is [`StoreError::Missing`]. For inspecting a data directory (another
    /// process may be writing it meanwhile).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("opsloop.db");
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::TooNew { found, supported });
        }
        Ok(Store { conn })
    }

    /// A store in memory (tests, one-shot commands).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The journal mode (`wal` for a file store).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))?)
    }

    /// Appends events in one transaction, stamped as ingested at `now_ms` (Unix ms; what
    /// retention by age goes by); an id already stored is skipped. Returns how many were new.
    pub fn append_events(&mut self, events: &[Event], now_ms: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut added = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                   (id, type, source, subject, time_ms, fingerprint, body, ingested_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in events {
                let body = serde_json::to_string(e).unwrap_or_default();
                let time_ms =
                    opsloop_core::time::parse_iso8601(e.time.as_bytes()).map_or(0, |t| t.0);
                added += stmt.execute(params![
                    e.id,
                    e.kind,
                    e.source,
                    e.subject,
                    time_ms,
                    e.fingerprint,
                    body,
                    now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Events matching `q`, oldest first, one page at a time.
    pub fn events(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, body FROM events
             WHERE seq > ?1
               AND (?2 IS NULL OR type = ?2)
               AND (?3 IS NULL OR subject = ?3)
               AND (?4 IS NULL OR time_ms >= ?4)
               AND (?5 IS NULL OR time_ms < ?5)
             ORDER BY seq LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                q.after.unwrap_or(0),
                q.kind,
                q.subject,
                q.since_ms,
                q.until_ms,
                limit as i64 + 1
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut events = Vec::new();
        let mut last_seq = None;
        let mut more = false;
        for row in rows {
            let (seq, body) = row?;
            if events.len() == limit {
                more = true;
                break;
            }
            let event = serde_json::from_str(&body)
                .map_err(|source| StoreError::Corrupt { seq, source })?;
            events.push(event);
            last_seq = Some(seq);
        }
        Ok(EventPage {
            events,
            next: if more { last_seq } else { None },
        })
    }

    /// The stored event with this id, if any.
    pub fn event_by_id(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, body FROM events WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(seq, body)| {
            serde_json::from_str(&body).map_err(|source| StoreError::Corrupt { seq, source })
        })
        .transpose()
    }

    /// Events with a sequence number above `after`, oldest first, at most `limit`, each with its
    /// sequence number (the outbox read of the embedded bus).
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Event)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![after, limit.max(1) as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            let event = serde_json::from_str(&body)
                .map_err(|source| StoreError::Corrupt { seq, source })?;
            out.push((seq, event));
        }
        Ok(out)
    }

    /// The highest sequence number stored (0 when empty).
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// The last sequence number a durable consumer acknowledged (0 for a new consumer).
    pub fn consumer_acked(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT acked_seq FROM consumers WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Registers the durable consumer `name` at position 0 if it is not known yet, so that it
    /// counts in [`Store::min_consumer_acked`] before its first acknowledgement.
    pub fn register_consumer(&mut self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        self.register_consumer_at(name, 0, now_ms)
    }

    /// Registers the durable consumer `name` as having acknowledged `seq` if it is not known
    /// yet (a known one keeps its position).
    pub fn register_consumer_at(
        &mut self,
        name: &str,
        seq: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO consumers (name, acked_seq, updated_ms) VALUES (?1, ?2, ?3)",
            params![name, seq, now_ms],
        )?;
        Ok(())
    }

    /// The names of the durable consumers.
    pub fn consumers(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM consumers ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    /// Forgets the durable consumer `name` (one that will not come back), so that it no longer
    /// holds the lag up. Returns whether it existed.
    pub fn remove_consumer(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM consumers WHERE name = ?1", [name])?
            > 0)
    }

    /// The lowest position acknowledged over all durable consumers (the slowest one), `None`
    /// when there is no consumer.
    pub fn min_consumer_acked(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT MIN(acked_seq) FROM consumers", [], |r| r.get(0))?)
    }

    /// The lowest sequence number still stored (0 when empty).
    pub fn first_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MIN(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Records that `name` has processed everything up to `seq` (never moves backwards).
    pub fn ack_consumer(&mut self, name: &str, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO consumers (name, acked_seq, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET acked_seq = MAX(acked_seq, excluded.acked_seq),
               updated_ms = excluded.updated_ms",
            params![name, seq, now_ms],
        )?;
        Ok(())
    }

    /// Deletes events stored (ingested) more than `max_age_ms` before `now_ms`, then the
    /// oldest beyond `max_events`, but never one after `keep_after_seq` (events a relay has not
    /// forwarded yet). Age goes by ingestion time, not by the event's own `time`: a log line
    /// with an old or wrongly dated timestamp is kept for `max_age_ms` like any other. A
    /// negative age, or one reaching before the earliest representable time, deletes nothing
    /// by age. Returns how many were deleted. The audit trail and incidents are never touched.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        max_age_ms: Option<i64>,
        max_events: Option<u64>,
        keep_after_seq: Option<i64>,
    ) -> Result<usize, StoreError> {
        let floor = keep_after_seq.unwrap_or(i64::MAX);
        let mut deleted = 0;
        let cutoff = max_age_ms
            .filter(|age| *age >= 0)
            .and_then(|age| now_ms.checked_sub(age));
        if let Some(cutoff) = cutoff {
            deleted += self.conn.execute(
                "DELETE FROM events WHERE ingested_ms < ?1 AND seq <= ?2",
                params![cutoff, floor],
            )?;
        }
        if let Some(max) = max_events {
            // More than i64::MAX events cannot be stored: such a limit keeps everything (a
            // wrapped, negative OFFSET would count as 0 and delete all).
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            deleted += self.conn.execute(
                "DELETE FROM events WHERE seq <= ?2 AND seq <= (SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                params![max, floor],
            )?;
        }
        Ok(deleted)
    }

    /// Stores a checkpoint (a source's read position, serialised by its owner).
    pub fn put_checkpoint(
        &mut self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO checkpoints (key, value, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
            params![key, value, now_ms],
        )?;
        Ok(())
    }

    /// A checkpoint by key.
    pub fn checkpoint(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM checkpoints WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Adds `delta` to a counter (created at zero).
    pub fn add_counter(&mut self, name: &str, delta: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            params![name, delta],
        )?;
        Ok(())
    }

    /// A counter's value (zero when never added to).
    pub fn counter(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }

    /// Inserts or updates templates in one transaction. Only the templates given are touched
    /// (one indexed statement each), so the caller passes just those that changed since its
    /// last save. Text and count are replaced; `first_seen_ms` keeps the earliest and
    /// `last_seen_ms` the latest time ever stored, and a `None` never erases a stored time.
    pub fn upsert_templates(&mut self, templates: &[StoredTemplate]) -> Result<(), StoreError> {
        if templates.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            // Two-argument MIN/MAX are NULL if either side is: COALESCE falls back to the
            // side that is set.
            let mut stmt = tx.prepare_cached(
                "INSERT INTO templates (id, template, count, first_seen_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET template = excluded.template, count = excluded.count,
                   first_seen_ms = COALESCE(MIN(templates.first_seen_ms, excluded.first_seen_ms),
                     templates.first_seen_ms, excluded.first_seen_ms),
                   last_seen_ms = COALESCE(MAX(templates.last_seen_ms, excluded.last_seen_ms),
                     templates.last_seen_ms, excluded.last_seen_ms)",
            )?;
            for t in templates {
                stmt.execute(params![
                    t.id,
                    t.template,
                    i64::try_from(t.count).unwrap_or(i64::MAX),
                    t.first_seen_ms,
                    t.last_seen_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Templates, most frequent first.
    pub fn templates(&self, limit: usize) -> Result<Vec<StoredTemplate>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, template, count, first_seen_ms, last_seen_ms FROM templates
             ORDER BY count DESC, id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(StoredTemplate {
                id: r.get(0)?,
                template: r.get(1)?,
                count: r.get::<_, i64>(2)?.max(0) as u64,
                first_seen_ms: r.get(3)?,
                last_seen_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
