//! The checkpoint protocol between file sources and the pipeline: a file position is saved
//! only after the events of every line before it are stored, so a crash replays lines and
//! never skips one.
//!
//! The tailer counts the lines it sends and, after each poll, keeps a [`Snapshots`] entry: its
//! positions tagged with that count. The pipeline tracks per source ([`ProgressTable`]) how
//! many of those lines are complete (no longer held in a multi-line record or format
//! detection) and sends that count with its events; the publisher stores it in the tailer's
//! `durable` counter once the events are on the bus. The tailer then saves the newest snapshot
//! the durable count has reached.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use opsloop_logs::tail::TailCheckpoint;
use opsloop_store::Store;

/// Position snapshots a tailer keeps while their lines are in flight.
pub const MAX_SNAPSHOTS: usize = 4_096;

/// A tailer's positions, each tagged with the count of lines sent when it was taken.
#[derive(Debug, Default)]
pub struct Snapshots {
    queue: VecDeque<(u64, Vec<TailCheckpoint>)>,
}

impl Snapshots {
    /// Records the positions after `sent` lines; only when lines were read or nothing is
    /// pending (an idle poll changes nothing).
    pub fn record(
        &mut self,
        sent: u64,
        read: u64,
        positions: impl FnOnce() -> Vec<TailCheckpoint>,
    ) {
        if read == 0 && !self.queue.is_empty() {
            return;
        }
        if self.queue.len() >= MAX_SNAPSHOTS {
            // Keep the oldest (the next to save) and thin out the rest: bounded memory, and
            // a later snapshot is always still there to save.
            self.queue.remove(1);
        }
        self.queue.push_back((sent, positions()));
    }

    /// The newest positions whose lines are all durable, removing older ones.
    pub fn take_durable(&mut self, durable: u64) -> Option<Vec<TailCheckpoint>> {
        let mut newest = None;
        while self.queue.front().is_some_and(|(seq, _)| *seq <= durable) {
            newest = self.queue.pop_front();
        }
        newest.map(|(_, p)| p)
    }

    /// Snapshots kept.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// None kept.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// One file source's progress as the pipeline sees it.
struct Progress {
    durable: Arc<AtomicU64>,
    sent: u64,
    reported: u64,
}

/// Per file source: lines sent and lines already reported complete.
#[derive(Default)]
pub struct ProgressTable {
    sources: HashMap<Arc<str>, Progress>,
}

impl ProgressTable {
    /// A batch of `source` arrived; its tailer has sent `sent` lines through it.
    pub fn sent(&mut self, source: Arc<str>, durable: Arc<AtomicU64>, sent: u64) {
        let p = self.sources.entry(source).or_insert(Progress {
            durable,
            sent: 0,
            reported: 0,
        });
        p.sent = sent;
    }

    /// The source (re)started: its tailer counts from zero again.
    pub fn reset(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// Sources with more lines complete than last reported, with where to report them;
    /// `held(source)` is how many of its lines the pipeline still holds.
    pub fn complete(&mut self, held: impl Fn(&str) -> u64) -> Vec<(Arc<AtomicU64>, u64)> {
        self.sources
            .iter_mut()
            .filter_map(|(source, p)| {
                let through = p.sent.saturating_sub(held(source));
                (through > p.reported).then(|| {
                    p.reported = through;
                    (Arc::clone(&p.durable), through)
                })
            })
            .collect()
    }
}

/// Why saved positions could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store could not be read (maybe transient: the source retries, then fails and is
    /// restarted).
    #[error("reading checkpoint {key}: {message}")]
    Store {
        /// The checkpoint key.
        key: String,
        /// The store's error.
        message: String,
    },
    /// The saved text is not a list of positions.
    #[error("checkpoint {key} is unreadable: {message}")]
    Corrupt {
        /// The checkpoint key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The positions saved under `key`; empty when none were saved.
pub fn load(
    store: &std::sync::Mutex<Store>,
    key: &str,
) -> Result<Vec<TailCheckpoint>, CheckpointError> {
    let unavailable = |message: String| CheckpointError::Store {
        key: key.to_string(),
        message,
    };
    // A poisoned lock says nothing about the saved text: the store is unavailable, not the
    // positions unreadable.
    let text = store
        .lock()
        .map_err(|_| unavailable("store lock poisoned".into()))?
        .checkpoint(key)
        .map_err(|e| unavailable(e.to_string()))?;
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;

    fn at(offset: u64) -> Vec<TailCheckpoint> {
        vec![TailCheckpoint {
            fingerprint: "f".into(),
            path: PathBuf::from("a.log"),
            offset,
        }]
    }

    #[test]
    fn only_positions_whose_lines_are_durable_are_saved() {
        let mut s = Snapshots::default();
        s.record(0, 0, || at(0));
        s.record(10, 10, || at(100));
        s.record(10, 0, || at(999)); // idle poll: nothing new
        s.record(25, 15, || at(250));
        assert_eq!(s.len(), 3);
        assert_eq!(s.take_durable(9).map(|p| p[0].offset), Some(0));
        assert_eq!(s.take_durable(9), None);
        assert_eq!(s.take_durable(24).map(|p| p[0].offset), Some(100));
        assert_eq!(s.take_durable(1000).map(|p| p[0].offset), Some(250));
        assert!(s.is_empty());
    }

    #[test]
    fn snapshots_are_bounded_and_keep_the_oldest() {
        let mut s = Snapshots::default();
        for i in 0..(MAX_SNAPSHOTS as u64 * 3) {
            s.record(i + 1, 1, || at(i));
        }
        assert_eq!(s.len(), MAX_SNAPSHOTS);
        assert_eq!(s.take_durable(1).map(|p| p[0].offset), Some(0));
        let last = MAX_SNAPSHOTS as u64 * 3;
        assert_eq!(s.take_durable(last).map(|p| p[0].offset), Some(last - 1));
    }

    #[test]
    fn lines_held_in_a_record_are_not_reported_complete() {
        let mut t = ProgressTable::default();
        let durable = Arc::new(AtomicU64::new(0));
        let src: Arc<str> = Arc::from("app");
        t.sent(Arc::clone(&src), Arc::clone(&durable), 10);
        let out = t.complete(|_| 3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, 7);
        assert!(t.complete(|_| 3).is_empty(), "nothing new");
        assert_eq!(t.complete(|_| 0)[0].1, 10);
        t.reset("app");
        assert!(t.complete(|_| 0).is_empty());
        assert_eq!(
            durable.load(Ordering::Relaxed),
            0,
            "the table never writes durable"
        );
    }

    #[test]
    fn an_unreadable_checkpoint_is_an_error_not_an_empty_list() {
        let store = std::sync::Mutex::new(Store::in_memory().unwrap());
        assert!(load(&store, "tail:a").unwrap().is_empty());
        store
            .lock()
            .unwrap()
            .put_checkpoint("tail:a", "{not json", 0)
            .unwrap();
        assert!(matches!(
            load(&store, "tail:a"),
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
