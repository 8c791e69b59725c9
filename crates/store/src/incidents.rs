//! Incidents of the self-healing loop as the engine last saved them: a few columns to filter
//! on and the whole incident, as the engine serialises it, in `data`.
//!
//! Listing is newest first (by creation time, then id) with a cursor naming the last incident
//! of the page, so pages stay stable while new incidents arrive.

use std::fmt;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::{Store, StoreError};

/// An incident as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredIncident {
    /// Its id.
    pub id: String,
    /// The playbook handling it.
    pub playbook: String,
    /// Its dedup/group key.
    pub key: String,
    /// What it acts on (a host, a deployment), when known.
    pub target: Option<String>,
    /// Its state (`detected`, `awaiting_approval`, `remediating`, ...).
    pub state: String,
    /// The playbook's mode (`enforce`, `dry-run`, `approve`).
    pub mode: String,
    /// When it was created, Unix ms.
    pub created_ms: i64,
    /// When it last changed, Unix ms.
    pub updated_ms: i64,
    /// The whole incident, as the engine serialises it.
    pub data: serde_json::Value,
}

/// Where a page of incidents ends: the next page starts after this incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentCursor {
    /// The last incident's creation time.
    pub created_ms: i64,
    /// The last incident's id.
    pub id: String,
}

impl IncidentCursor {
    /// Reads a cursor as [`fmt::Display`] writes it (`CREATED_MS:ID`).
    pub fn parse(s: &str) -> Option<IncidentCursor> {
        let (ms, id) = s.split_once(':')?;
        Some(IncidentCursor {
            created_ms: ms.parse().ok()?,
            id: id.to_string(),
        })
    }
}

impl fmt::Display for IncidentCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.created_ms, self.id)
    }
}

/// A filter over incidents. Empty fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    /// Only in this state.
    pub state: Option<String>,
    /// Only of this playbook.
    pub playbook: Option<String>,
    /// Only with this key.
    pub key: Option<String>,
    /// Created at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Created before (Unix ms).
    pub until_ms: Option<i64>,
    /// Resume after this incident (from a previous page).
    pub cursor: Option<IncidentCursor>,
    /// Page size (1..=1000; default 100).
    pub limit: Option<usize>,
}

/// One page of incidents, newest first.
#[derive(Clone, Debug)]
pub struct IncidentPage {
    /// The incidents.
    pub items: Vec<StoredIncident>,
    /// Cursor for the next page, when there may be more.
    pub next_cursor: Option<IncidentCursor>,
}

const INCIDENT_COLUMNS: &str =
    "id, playbook, key, target, state, mode, created_ms, updated_ms, data";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredIncident, String)> {
    Ok((
        StoredIncident {
            id: r.get(0)?,
            playbook: r.get(1)?,
            key: r.get(2)?,
            target: r.get(3)?,
            state: r.get(4)?,
            mode: r.get(5)?,
            created_ms: r.get(6)?,
            updated_ms: r.get(7)?,
            data: serde_json::Value::Null,
        },
        r.get(8)?,
    ))
}

fn with_data((mut incident, data): (StoredIncident, String)) -> Result<StoredIncident, StoreError> {
    incident.data = serde_json::from_str(&data).map_err(|source| StoreError::CorruptIncident {
        id: incident.id.clone(),
        source,
    })?;
    Ok(incident)
}

impl Store {
    /// Inserts or replaces an incident. `created_ms` stays as first stored.
    pub fn put_incident(&mut self, incident: &StoredIncident) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO incidents (id, playbook, key, target, state, mode, created_ms, updated_ms, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(id) DO UPDATE SET playbook = excluded.playbook, key = excluded.key,
               target = excluded.target, state = excluded.state, mode = excluded.mode,
               updated_ms = excluded.updated_ms, data = excluded.data",
            params![
                incident.id,
                incident.playbook,
                incident.key,
                incident.target,
                incident.state,
                incident.mode,
                incident.created_ms,
                incident.updated_ms,
                incident.data.to_string(),
            ],
        )?;
        Ok(())
    }

    /// An incident by id.
    pub fn incident(&self, id: &str) -> Result<Option<StoredIncident>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                incident_row,
            )
            .optional()?;
        row.map(with_data).transpose()
    }

    /// Deletes incidents that ended (resolved, failed, escalated, rejected, cancelled, dry
    /// run) and last changed more than `max_age_ms` before `now_ms`; open ones stay at any
    /// age. The audit trail keeps its records of them. Returns how many were deleted; a
    /// negative age, or one reaching before the earliest representable time, deletes nothing.
    pub fn prune_incidents(&mut self, now_ms: i64, max_age_ms: i64) -> Result<usize, StoreError> {
        let Some(cutoff) = (max_age_ms >= 0)
            .then(|| now_ms.checked_sub(max_age_ms))
            .flatten()
        else {
            return Ok(0);
        };
        Ok(self.conn.execute(
            "DELETE FROM incidents WHERE updated_ms < ?1 AND state IN
               ('resolved', 'failed', 'escalated', 'rejected', 'cancelled', 'dry_run')",
            params![cutoff],
        )?)
    }

    /// Incidents matching `q`, newest first, one page at a time.
    pub fn incidents(&self, q: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR playbook = ?2)
               AND (?3 IS NULL OR key = ?3)
               AND (?4 IS NULL OR created_ms >= ?4)
               AND (?5 IS NULL OR created_ms < ?5)
               AND (?6 IS NULL OR created_ms < ?6 OR (created_ms = ?6 AND id < ?7))
             ORDER BY created_ms DESC, id DESC LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                q.state,
                q.playbook,
                q.key,
                q.since_ms,
                q.until_ms,
                q.cursor.as_ref().map(|c| c.created_ms),
                q.cursor.as_ref().map(|c| c.id.as_str()),
                limit as i64 + 1
            ],
            incident_row,
        )?;
        let mut items = Vec::new();
        let mut more = false;
        for row in rows {
            let row = row?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(with_data(row)?);
        }
        let next_cursor = if more {
            items.last().map(|i: &StoredIncident| IncidentCursor {
                created_ms: i.created_ms,
                id: i.id.clone(),
            })
        } else {
            None
        };
        Ok(IncidentPage { items, next_cursor })
    }
}

#[cfg(test)]
mod tests;
