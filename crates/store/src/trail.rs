//! The audit trail: an append-only, hash-chained record of the self-healing loop's decisions
//! (matched, suppressed and why, approved, step started and finished, verification).
//!
//! Each record's hash is SHA-256 over a length-prefixed encoding of its fields and the previous
//! record's hash ([`GENESIS_HASH`] for the first), so editing, removing or reordering a stored
//! record breaks the chain from there on. The last sequence number and hash are also kept in a
//! one-row head table, written in the same transaction as the records, so that removing the
//! last records is detected as well. Someone able to rewrite the head and every hash after an
//! edit is not detected: the chain is tamper-evident against edits of the table, not against a
//! writer who recomputes it (anchoring the head elsewhere would be the next step).
//!
//! Triggers refuse `UPDATE` and `DELETE` on the trail, so no code path (retention included)
//! removes a record by mistake.

use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How often [`Store::verify_trail_with_progress`] reports, in records.
pub const PROGRESS_EVERY: u64 = 10_000;

/// Domain separation: these hashes mean "audit record, encoding version 1" and nothing else.
const HASH_DOMAIN: &[u8] = b"opsloop.audit-trail.v1\0";

/// A record to append. `data` is stored as compact JSON text, and the hash covers that text.
#[derive(Clone, Copy, Debug)]
pub struct TrailAppend<'a> {
    /// What was decided (`matched`, `suppressed`, `approved`, `step_started`, ...).
    pub kind: &'a str,
    /// The incident it concerns, if any.
    pub incident_id: Option<&'a str>,
    /// Who decided: an API token's name, a playbook, the engine.
    pub actor: Option<&'a str>,
    /// Details; must not hold secret values.
    pub data: &'a serde_json::Value,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrailRecord {
    /// Position in the trail, from 1, without gaps.
    pub seq: i64,
    /// When it was appended, Unix ms.
    pub time_ms: i64,
    /// What was decided.
    pub kind: String,
    /// The incident it concerns.
    pub incident_id: Option<String>,
    /// Who decided.
    pub actor: Option<String>,
    /// Details.
    pub data: serde_json::Value,
    /// The previous record's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This record's hash, lowercase hex SHA-256.
    pub hash: String,
}

/// What is wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailFaultKind {
    /// The record's contents do not match its hash.
    Edited,
    /// A sequence number is missing.
    Removed,
    /// The record does not follow the one before it (`prev_hash` differs).
    Reordered,
    /// The last records are missing (the head names more).
    Truncated,
    /// Records stand beyond the head, or the head is missing or differs from the last record.
    HeadMismatch,
    /// A field is missing or of the wrong type.
    Unreadable,
}

/// The first bad record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrailFault {
    /// Its sequence number (for a removed or truncated record, the first missing one).
    pub seq: i64,
    /// What kind of damage.
    pub kind: TrailFaultKind,
    /// Why, in words.
    pub reason: String,
}

/// The outcome of [`Store::verify_trail`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrailVerification {
    /// Records stored.
    pub records: u64,
    /// Whether the whole chain checks out.
    pub ok: bool,
    /// The first bad record, when not ok.
    pub first_bad: Option<TrailFault>,
}

/// Hex digits of a SHA-256 digest.
fn to_hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn put_field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn put_optional(h: &mut Sha256, field: Option<&str>) {
    match field {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            put_field(h, s.as_bytes());
        }
    }
}

/// The hash of a record: SHA-256 over the domain tag, `seq` and `time_ms` as 8 big-endian
/// bytes, then each text field as an 8-byte big-endian length and its bytes (the optional ones
/// after a 0/1 presence byte), so that no two different records encode alike.
pub fn record_hash(
    seq: i64,
    time_ms: i64,
    kind: &str,
    incident_id: Option<&str>,
    actor: Option<&str>,
    data: &str,
    prev_hash: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    put_field(&mut h, kind.as_bytes());
    put_optional(&mut h, incident_id);
    put_optional(&mut h, actor);
    put_field(&mut h, data.as_bytes());
    put_field(&mut h, prev_hash.as_bytes());
    to_hex(&h.finalize())
}

/// Whether the store has the trail's tables (a store from before them has no trail).
fn has_trail(conn: &rusqlite::Connection) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_trail'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn text<'a>(v: ValueRef<'a>) -> Option<&'a str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

fn optional_text<'a>(v: ValueRef<'a>) -> Option<Option<&'a str>> {
    match v {
        ValueRef::Null => Some(None),
        other => text(other).map(Some),
    }
}

fn integer(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

/// One stored row's fields, borrowed from the statement.
struct RawRecord<'a> {
    seq: i64,
    time_ms: i64,
    kind: &'a str,
    incident_id: Option<&'a str>,
    actor: Option<&'a str>,
    data: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

const TRAIL_COLUMNS: &str = "seq, time_ms, kind, incident_id, actor, data, prev_hash, hash";

/// Reads a row as stored, naming the first field that is missing or of the wrong type.
fn raw_record<'a>(row: &'a rusqlite::Row<'_>) -> Result<Result<RawRecord<'a>, String>, StoreError> {
    let seq = integer(row.get_ref(0)?);
    let time_ms = integer(row.get_ref(1)?);
    let kind = text(row.get_ref(2)?);
    let incident_id = optional_text(row.get_ref(3)?);
    let actor = optional_text(row.get_ref(4)?);
    let data = text(row.get_ref(5)?);
    let prev_hash = text(row.get_ref(6)?);
    let hash = text(row.get_ref(7)?);
    let Some(seq) = seq else {
        return Ok(Err("seq is not an integer".into()));
    };
    let record = match (time_ms, kind, incident_id, actor, data, prev_hash, hash) {
        (
            Some(time_ms),
            Some(kind),
            Some(incident_id),
            Some(actor),
            Some(data),
            Some(prev_hash),
            Some(hash),
        ) => RawRecord {
            seq,
            time_ms,
            kind,
            incident_id,
            actor,
            data,
            prev_hash,
            hash,
        },
        _ => return Ok(Err(format!("record {seq} has a missing or mistyped field"))),
    };
    Ok(Ok(record))
}

impl RawRecord<'_> {
    fn computed_hash(&self) -> String {
        record_hash(
            self.seq,
            self.time_ms,
            self.kind,
            self.incident_id,
            self.actor,
            self.data,
            self.prev_hash,
        )
    }
}

/// Checks one record against the one before it (`expected` is its due sequence number).
fn check_record(raw: &RawRecord<'_>, expected: i64, prev_hash: &str) -> Option<TrailFault> {
    let seq = raw.seq;
    if seq > expected {
        let reason = if seq == expected + 1 {
            format!("record {expected} was removed (the next stored record is {seq})")
        } else {
            format!(
                "records {expected}..={} were removed (the next stored record is {seq})",
                seq - 1
            )
        };
        return Some(TrailFault {
            seq: expected,
            kind: TrailFaultKind::Removed,
            reason,
        });
    }
    if seq < expected {
        return Some(TrailFault {
            seq,
            kind: TrailFaultKind::Reordered,
            reason: format!("sequence number {seq} is out of order (expected {expected})"),
        });
    }
    if raw.prev_hash != prev_hash {
        let before = if seq == 1 {
            "the genesis value".to_string()
        } else {
            format!("record {}'s hash", seq - 1)
        };
        return Some(TrailFault {
            seq,
            kind: TrailFaultKind::Reordered,
            reason: format!(
                "its prev_hash does not match {before}: a record before it was removed, \
                 reordered or replaced"
            ),
        });
    }
    if raw.computed_hash() != raw.hash {
        return Some(TrailFault {
            seq,
            kind: TrailFaultKind::Edited,
            reason: "its contents do not match its hash: the record was edited".into(),
        });
    }
    None
}

/// Checks the head (last sequence number and hash as recorded at append) against the last
/// record read (`(0, GENESIS_HASH)` for an empty trail).
fn check_head(head: Option<(i64, String)>, last_seq: i64, last_hash: &str) -> Option<TrailFault> {
    let Some((head_seq, head_hash)) = head else {
        return (last_seq > 0).then(|| TrailFault {
            seq: last_seq,
            kind: TrailFaultKind::HeadMismatch,
            reason: "the trail's head (last sequence number and hash) is missing".into(),
        });
    };
    if head_seq > last_seq {
        let first = last_seq + 1;
        let reason = if head_seq == first {
            format!("record {first}, the last one, was removed (the head names {head_seq})")
        } else {
            format!(
                "records {first}..={head_seq} at the end were removed (the head names {head_seq})"
            )
        };
        return Some(TrailFault {
            seq: first,
            kind: TrailFaultKind::Truncated,
            reason,
        });
    }
    if head_seq < last_seq {
        return Some(TrailFault {
            seq: head_seq + 1,
            kind: TrailFaultKind::HeadMismatch,
            reason: format!(
                "records {}..={last_seq} stand beyond the head ({head_seq}): they were not \
                 appended through the store",
                head_seq + 1
            ),
        });
    }
    (head_hash != last_hash).then(|| TrailFault {
        seq: last_seq,
        kind: TrailFaultKind::HeadMismatch,
        reason: "the last record's hash differs from the head's: the tail was replaced".into(),
    })
}

impl Store {
    /// Appends one record at `now_ms` (Unix ms) and returns it as stored.
    pub fn append_trail(
        &mut self,
        entry: &TrailAppend<'_>,
        now_ms: i64,
    ) -> Result<TrailRecord, StoreError> {
        let mut records = self.append_trail_many(std::slice::from_ref(entry), now_ms)?;
        records.pop().ok_or(StoreError::TrailDamaged {
            reason: "the appended record was not returned".into(),
        })
    }

    /// Appends records in order, in one transaction, and returns them as stored. Refuses
    /// ([`StoreError::TrailDamaged`]) when the last stored record differs from the head:
    /// chaining onto a truncated trail would hide the truncation.
    pub fn append_trail_many(
        &mut self,
        entries: &[TrailAppend<'_>],
        now_ms: i64,
    ) -> Result<Vec<TrailRecord>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Immediate: the head is read and written under one write lock, even across processes.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head: Option<(i64, String)> = tx
            .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit_trail ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if head != last {
            return Err(StoreError::TrailDamaged {
                reason: format!(
                    "the last record ({}) does not match the head ({}); run `opsloop audit-log \
                     verify`",
                    last.map_or("none".into(), |(s, _)| s.to_string()),
                    head.map_or("none".into(), |(s, _)| s.to_string()),
                ),
            });
        }
        let (mut seq, mut prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_trail (seq, time_ms, kind, incident_id, actor, data, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in entries {
                seq += 1;
                let data = e.data.to_string();
                let hash = record_hash(
                    seq,
                    now_ms,
                    e.kind,
                    e.incident_id,
                    e.actor,
                    &data,
                    &prev_hash,
                );
                insert.execute(params![
                    seq,
                    now_ms,
                    e.kind,
                    e.incident_id,
                    e.actor,
                    data,
                    prev_hash,
                    hash
                ])?;
                let record = TrailRecord {
                    seq,
                    time_ms: now_ms,
                    kind: e.kind.to_string(),
                    incident_id: e.incident_id.map(str::to_string),
                    actor: e.actor.map(str::to_string),
                    data: e.data.clone(),
                    prev_hash: std::mem::take(&mut prev_hash),
                    hash,
                };
                prev_hash.clone_from(&record.hash);
                out.push(record);
            }
        }
        tx.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![seq, prev_hash],
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// The head: the last record's sequence number and hash as recorded at append (`None`
    /// before the first record).
    pub fn trail_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        if !has_trail(&self.conn)? {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Records after `after_seq`, oldest first, at most `limit` (1..=10000): page on with the
    /// last record's `seq`.
    pub fn trail(&self, after_seq: i64, limit: usize) -> Result<Vec<TrailRecord>, StoreError> {
        if !has_trail(&self.conn)? {
            return Ok(Vec::new());
        }
        let limit = limit.clamp(1, 10_000);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TRAIL_COLUMNS} FROM audit_trail WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![after_seq, limit as i64])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let raw = raw_record(row)?.map_err(|reason| StoreError::TrailDamaged { reason })?;
            let data = serde_json::from_str(raw.data).map_err(|source| StoreError::Corrupt {
                seq: raw.seq,
                source,
            })?;
            out.push(TrailRecord {
                seq: raw.seq,
                time_ms: raw.time_ms,
                kind: raw.kind.to_string(),
                incident_id: raw.incident_id.map(str::to_string),
                actor: raw.actor.map(str::to_string),
                data,
                prev_hash: raw.prev_hash.to_string(),
                hash: raw.hash.to_string(),
            });
        }
        Ok(out)
    }

    /// Checks the whole chain, streaming (one record in memory at a time), and names the
    /// first bad record: edited (hash mismatch), removed (a gap), reordered (`prev_hash`
    /// mismatch) or truncated (the head names more records than are stored).
    pub fn verify_trail(&self) -> Result<TrailVerification, StoreError> {
        self.verify_trail_with_progress(&mut |_| {})
    }

    /// [`Store::verify_trail`], calling `progress` with the number of records read so far
    /// every [`PROGRESS_EVERY`] records and once at the end.
    pub fn verify_trail_with_progress(
        &self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TrailVerification, StoreError> {
        if !has_trail(&self.conn)? {
            return Ok(TrailVerification {
                records: 0,
                ok: true,
                first_bad: None,
            });
        }
        // One read transaction: appends made meanwhile are not half seen.
        let tx = self.conn.unchecked_transaction()?;
        let mut records = 0u64;
        let mut first_bad = None;
        let mut expected = 1i64;
        let mut prev_hash = GENESIS_HASH.to_string();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT {TRAIL_COLUMNS} FROM audit_trail ORDER BY seq"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                records += 1;
                if records.is_multiple_of(PROGRESS_EVERY) {
                    progress(records);
                }
                if first_bad.is_some() {
                    // Past the first fault only the count goes on.
                    continue;
                }
                match raw_record(row)? {
                    Err(reason) => {
                        first_bad = Some(TrailFault {
                            seq: expected,
                            kind: TrailFaultKind::Unreadable,
                            reason,
                        });
                    }
                    Ok(raw) => {
                        first_bad = check_record(&raw, expected, &prev_hash);
                        expected = raw.seq.saturating_add(1);
                        prev_hash.clear();
                        prev_hash.push_str(raw.hash);
                    }
                }
            }
        }
        if first_bad.is_none() {
            let head = tx
                .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                    Ok((
                        integer(r.get_ref(0)?),
                        text(r.get_ref(1)?).map(str::to_string),
                    ))
                })
                .optional()?;
            first_bad = match head {
                Some((Some(seq), Some(hash))) => {
                    check_head(Some((seq, hash)), expected - 1, &prev_hash)
                }
                None => check_head(None, expected - 1, &prev_hash),
                Some(_) => Some(TrailFault {
                    seq: expected - 1,
                    kind: TrailFaultKind::HeadMismatch,
                    reason: "the trail's head has a missing or mistyped field".into(),
                }),
            };
        }
        tx.finish()?;
        progress(records);
        Ok(TrailVerification {
            records,
            ok: first_bad.is_none(),
            first_bad,
        })
    }
}

#[cfg(test)]
mod tests;
