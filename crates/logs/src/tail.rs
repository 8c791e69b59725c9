//! Following log files: [`FileTailer`] reads every file matching a set of globs as it grows,
//! through rotation, and remembers where it stopped.
//!
//! Files are identified by a *fingerprint*, the hash of their first line, not by name: a file
//! renamed by rotation (`app.log` → `app.log.1`) keeps its identity and its position, so it is
//! neither read twice nor lost, and the new `app.log` is a new file read from its start. An
//! open handle is kept on every tracked file, so a renamed file is still read to its end.
//! Positions are [`TailCheckpoint`]s that the caller persists and hands back on restart.
//!
//! The tailer polls (as Vector's file source does): inotify misses renames, NFS sends no events.
//! A caller may poll early when told of a change in [`FileTailer::directories`].
//!
//! A file truncated or rewritten in place is noticed by its size or by its first line no
//! longer matching its fingerprint, before anything more is read from it. When the copy of its
//! old content is matched (`app.log*`), reading continues in the copy, even if the copy's name
//! is listed only later; the file itself is then read from its start.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::input::{DEFAULT_MAX_LINE, LineCutter, LineFlags, decode_line};

/// Bytes of the first line that make a fingerprint; a file needs a complete first line, or
/// this many bytes, before it is read.
const FINGERPRINT_BYTES: usize = 256;
/// Rewritten contents remembered for a copy that may show up late.
const MAX_RETIRED: usize = 64;
/// A file that no glob matches any more is dropped after being idle this long.
const ROTATE_WAIT: Duration = Duration::from_secs(10);

/// Where reading a file stopped, persisted by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailCheckpoint {
    /// The file's fingerprint (hex).
    pub fingerprint: String,
    /// The last path it was seen at.
    pub path: PathBuf,
    /// Bytes consumed (up to the end of the last complete line).
    pub offset: u64,
}

/// Where to start in a file first seen when the tailer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only new lines.
    End,
    /// The whole file.
    Beginning,
}

struct Tracked {
    path: PathBuf,
    file: File,
    offset: u64,
    /// The line read up to the end of the file so far (cut at the limit, the rest skipped but
    /// counted); it is delivered when its newline comes.
    partial: LineCutter,
    last_growth: Instant,
    matched: bool,
    /// Seen shorter than `offset`: truncated in place, resolved by the next discovery.
    truncated: bool,
}

/// Bytes read from one file per [`FileTailer::poll`], so that a large backlog is read in
/// steps between which positions can be taken.
pub const READ_BUDGET: u64 = 4 * 1024 * 1024;

/// Follows the files matching `include` (minus `exclude`).
pub struct FileTailer {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    start_at: StartAt,
    tracked: HashMap<u64, Tracked>,
    restored: HashMap<u64, u64>,
    /// Positions of contents rewritten in place, newest last: a copy of one that shows up
    /// later (its name listed after the truncation was seen) continues from there.
    retired: VecDeque<(u64, u64)>,
    first_scan: bool,
    max_line: usize,
    /// The line being delivered, reused.
    text: String,
}

/// Why the tailer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A glob does not parse.
    #[error("invalid glob {glob:?}: {source}")]
    Glob {
        /// The glob.
        glob: String,
        /// The cause.
        source: glob::PatternError,
    },
}

fn fingerprint_of(file: &mut File) -> Option<u64> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let line_end = head[..n].iter().position(|&b| b == b'\n').map(|i| i + 1);
    match line_end {
        Some(end) => Some(xxh3_64(&head[..end])),
        None if n == FINGERPRINT_BYTES => Some(xxh3_64(&head)),
        None => None, // not even one complete line yet
    }
}

impl FileTailer {
    /// A tailer over `include` globs, skipping `exclude`, resuming from `checkpoints`.
    pub fn new(
        include: &[String],
        exclude: &[String],
        start_at: StartAt,
        checkpoints: &[TailCheckpoint],
    ) -> Result<FileTailer, TailError> {
        for g in include {
            glob::Pattern::new(g).map_err(|source| TailError::Glob {
                glob: g.clone(),
                source,
            })?;
        }
        let exclude = exclude
            .iter()
            .map(|g| {
                glob::Pattern::new(g).map_err(|source| TailError::Glob {
                    glob: g.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let restored = checkpoints
            .iter()
            .filter_map(|c| {
                u64::from_str_radix(&c.fingerprint, 16)
                    .ok()
                    .map(|f| (f, c.offset))
            })
            .collect();
        Ok(FileTailer {
            include: include.to_vec(),
            exclude,
            start_at,
            tracked: HashMap::new(),
            restored,
            retired: VecDeque::new(),
            first_scan: true,
            max_line: DEFAULT_MAX_LINE,
            text: String::new(),
        })
    }

    /// Cuts lines longer than `max` bytes (default [`DEFAULT_MAX_LINE`]), under the policy of
    /// [`crate::input::decode_line`].
    pub fn with_max_line(mut self, max: usize) -> FileTailer {
        self.max_line = max.max(1);
        self
    }

    fn matching_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for g in &self.include {
            let Ok(paths) = glob::glob(g) else { continue };
            for p in paths.flatten() {
                if p.is_file()
                    && !self.exclude.iter().any(|x| x.matches_path(&p))
                    && !out.contains(&p)
                {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Discovers files and reads what was appended, at most [`READ_BUDGET`] bytes per file
    /// (call again while it returns more than zero); calls `line(path, text, flags)` for every
    /// complete line, in file order. A line longer than the limit is delivered once, cut, when
    /// its newline comes (however many polls that takes), so positions stay at line starts.
    /// Returns the number of bytes read.
    pub fn poll(&mut self, line: &mut dyn FnMut(&Path, &str, LineFlags)) -> u64 {
        for t in self.tracked.values_mut() {
            t.matched = false;
        }
        let mut found: Vec<Option<(PathBuf, File, u64)>> = self
            .matching_paths()
            .into_iter()
            .filter_map(|path| {
                let mut file = File::open(&path).ok()?;
                let fp = fingerprint_of(&mut file)?;
                Some(Some((path, file, fp)))
            })
            .collect();
        // First the files we follow, by identity: the same file (same fingerprint, same
        // inode) under whatever name it has now.
        for slot in found.iter_mut() {
            let Some((path, file, fp)) = slot else {
                continue;
            };
            if let Some(t) = self.tracked.get_mut(fp)
                && same_inode(&t.file, file)
            {
                t.matched = true;
                t.path = path.clone();
                *slot = None;
            }
        }
        // Then copies: another file carrying the fingerprint of one we follow. While the
        // original still carries it, the copy is a duplicate and is skipped; once the original
        // was truncated (copy-truncate rotation), the copy holds the lines not read yet, so
        // reading continues in the copy at the same position.
        for slot in found.iter_mut() {
            let Some((_, _, fp)) = slot else { continue };
            let Some(t) = self.tracked.get_mut(fp) else {
                continue;
            };
            if let Some((path, file, _)) = slot.take()
                && !t.matched
            {
                // A copy shorter than the position read cannot happen unless the original
                // was rewritten while it was read; then count the copy as read rather than
                // read all of it again.
                let size = file.metadata().map_or(0, |m| m.len());
                if size < t.offset {
                    t.offset = size;
                    t.partial.clear();
                }
                t.file = file;
                t.path = path;
                t.truncated = false;
                t.matched = true;
            }
        }
        // Files never seen under their fingerprint.
        for (path, file, fp) in found.into_iter().flatten() {
            // The same file under a new fingerprint was rewritten in place (copy-truncate
            // without a visible copy): keep following it, from its new start.
            let same_file = self
                .tracked
                .iter()
                .find(|(_, t)| same_inode(&t.file, &file))
                .map(|(k, _)| *k);
            if let Some((old, mut t)) =
                same_file.and_then(|k| self.tracked.remove(&k).map(|t| (k, t)))
            {
                if self.retired.len() == MAX_RETIRED {
                    self.retired.pop_front();
                }
                self.retired.push_back((old, t.offset));
                t.offset = 0;
                t.partial.clear();
                t.truncated = false;
                t.matched = true;
                t.path = path;
                self.tracked.insert(fp, t);
                continue;
            }
            let size = file.metadata().map_or(0, |m| m.len());
            let retired = self
                .retired
                .iter()
                .position(|(f, _)| *f == fp)
                .and_then(|i| self.retired.remove(i))
                .map(|(_, offset)| offset);
            let offset = match self.restored.remove(&fp).or(retired) {
                Some(o) if o <= size => o,
                Some(_) => 0,
                None if self.first_scan && self.start_at == StartAt::End => size,
                None => 0,
            };
            self.tracked.insert(
                fp,
                Tracked {
                    path,
                    file,
                    offset,
                    partial: LineCutter::new(self.max_line),
                    last_growth: Instant::now(),
                    matched: true,
                    truncated: false,
                },
            );
        }
        // Truncated with no copy to continue in: read the file again from its start.
        for t in self.tracked.values_mut() {
            if t.truncated {
                t.truncated = false;
                t.offset = 0;
                t.partial.clear();
            }
        }
        self.first_scan = false;
        let mut read = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let text = &mut self.text;
        let max_line = self.max_line;
        for (fp, t) in self.tracked.iter_mut() {
            let size = t.file.metadata().map_or(0, |m| m.len());
            // Shorter than read, or no longer starting with the line that identifies it:
            // truncated or rewritten since discovery (copy-truncate rotation, possibly already
            // written past the old position). Reading on would mix the new content into the
            // old file's position; the next discovery looks for the copy to finish the old
            // content in, then reads this file again from its start.
            if size < t.offset || fingerprint_of(&mut t.file) != Some(*fp) {
                t.truncated = true;
                continue;
            }
            if t.file
                .seek(SeekFrom::Start(t.offset + t.partial.consumed()))
                .is_err()
            {
                continue;
            }
            let budget = read + READ_BUDGET;
            while read < budget {
                let n = match t.file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                read += n as u64;
                t.last_growth = Instant::now();
                let mut start = 0;
                for i in memchr::memchr_iter(b'\n', &buf[..n]) {
                    let piece = &buf[start..i];
                    let flags = if t.partial.is_empty() {
                        t.offset += piece.len() as u64 + 1;
                        decode_line(piece, max_line, text)
                    } else {
                        t.partial.extend(piece);
                        t.offset += t.partial.consumed() + 1;
                        t.partial.finish(text)
                    };
                    line(&t.path, text, flags);
                    start = i + 1;
                }
                // The start of a line whose end is not written yet; of a line too long to
                // hold, only what the limit keeps (the rest is counted, to seek past it).
                t.partial.extend(&buf[start..n]);
            }
        }
        // Forget files no glob matches any more once they stopped growing (rotated away and
        // read to their end).
        self.tracked
            .retain(|_, t| t.matched || t.last_growth.elapsed() < ROTATE_WAIT);
        read
    }

    /// The directories the include globs read from (their parts before the first wildcard),
    /// for a caller that wants to be woken when something changes there.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for g in &self.include {
            let mut dir = PathBuf::new();
            let mut wildcard = false;
            for part in Path::new(g).components() {
                if part
                    .as_os_str()
                    .to_string_lossy()
                    .contains(['*', '?', '[', '{'])
                {
                    wildcard = true;
                    break;
                }
                dir.push(part);
            }
            if !wildcard {
                dir.pop(); // a file name: watch its directory
            }
            if !dir.as_os_str().is_empty() && !out.contains(&dir) {
                out.push(dir);
            }
        }
        out
    }

    /// Positions to persist.
    pub fn checkpoints(&self) -> Vec<TailCheckpoint> {
        let mut out: Vec<TailCheckpoint> = self
            .tracked
            .iter()
            .map(|(fp, t)| TailCheckpoint {
                fingerprint: format!("{fp:016x}"),
                path: t.path.clone(),
                offset: t.offset,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

#[cfg(unix)]
fn same_inode(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &File, _: &File) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// A directory with `app.log`, and a tailer over `app.log*` reading from the beginning.
    fn app_log_and_copies() -> (tempfile::TempDir, PathBuf, FileTailer) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let glob = format!("{}/app.log*", dir.path().display());
        let t = FileTailer::new(&[glob], &[], StartAt::Beginning, &[]).unwrap();
        (dir, log, t)
    }

    fn collect(t: &mut FileTailer) -> Vec<String> {
        let mut out = Vec::new();
        t.poll(&mut |_, l, _| out.push(l.to_string()));
        out
    }

    #[test]
    fn follows_growth_rename_rotation_and_copy_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old line before start\n");
        let glob = format!("{}/*.log", dir.path().display());
        let mut t = FileTailer::new(&[glob], &[], StartAt::End, &[]).unwrap();
        assert!(collect(&mut t).is_empty(), "start at the end");
        append(&log, "one\ntwo\npart");
        assert_eq!(collect(&mut t), ["one", "two"]);
        append(&log, "ial\n");
        assert_eq!(collect(&mut t), ["partial"]);

        // Rename rotation: the old file keeps being read through its handle, the new one from
        // its start, nothing twice.
        append(&log, "last of old\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "first of new\n");
        let mut got = collect(&mut t);
        got.sort();
        assert_eq!(got, ["first of new", "last of old"]);

        // Copy-truncate.
        append(&log, "second of new\n");
        assert_eq!(collect(&mut t), ["second of new"]);
        std::fs::write(&log, "").unwrap();
        collect(&mut t);
        append(&log, "after truncate\n");
        assert_eq!(collect(&mut t), ["after truncate"], "once, not twice");
    }

    #[test]
    fn an_over_long_line_across_polls_is_cut_once_and_skipped_to_its_end() {
        let (_dir, log, mut t) = app_log_and_copies();
        append(&log, "first\n");
        let mut got: Vec<(String, LineFlags)> = Vec::new();
        t.poll(&mut |_, l, f| got.push((l.to_string(), f)));
        // A 3 MiB line written in 512 KiB appends, polled after each; `é` straddles the limit.
        let mut long = "é".repeat(1 << 19);
        long.insert(0, 'x');
        let long = long.repeat(3);
        assert!(long.len() > 3 << 20);
        for chunk in long.as_bytes().chunks(512 << 10) {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(chunk).unwrap();
            t.poll(&mut |_, l, f| got.push((l.to_string(), f)));
            assert_eq!(got.len(), 1, "nothing until the line ends");
            // The position stays at the start of the unfinished line.
            assert_eq!(t.checkpoints()[0].offset, 6);
            let held: usize = t.tracked.values().map(|t| t.partial.kept().len()).sum();
            assert!(held <= DEFAULT_MAX_LINE + 1, "held {held}");
        }
        append(&log, "\nnext line\n");
        t.poll(&mut |_, l, f| got.push((l.to_string(), f)));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("first".into(), LineFlags::default()));
        let (cut, flags) = &got[1];
        assert!(flags.cut && !flags.invalid_utf8, "{flags:?}");
        assert_eq!(
            cut.len(),
            DEFAULT_MAX_LINE - 1,
            "cut before the split character"
        );
        assert!(long.starts_with(cut.as_str()));
        assert_eq!(got[2], ("next line".into(), LineFlags::default()));
        let end = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        assert_eq!(t.checkpoints()[0].offset, end);
    }

    #[test]
    fn copy_truncate_with_a_visible_copy_delivers_every_line_once() {
        let (dir, log, mut t) = app_log_and_copies();
        let mut got = Vec::new();
        for generation in 1..=3 {
            append(&log, &format!("g{generation} a\n"));
            got.extend(collect(&mut t));
            // Written but not read before the copy is taken.
            append(&log, &format!("g{generation} b\n"));
            std::fs::copy(&log, dir.path().join(format!("app.log.{generation}"))).unwrap();
            if generation == 2 {
                // A poll between the copy and the truncation skips the duplicate.
                got.extend(collect(&mut t));
            }
            std::fs::write(&log, "").unwrap();
            if generation == 3 {
                // A poll that sees the truncation before the new content.
                got.extend(collect(&mut t));
            }
            append(&log, &format!("g{generation} c\n"));
            got.extend(collect(&mut t));
            got.extend(collect(&mut t));
        }
        got.sort();
        assert_eq!(
            got,
            [
                "g1 a", "g1 b", "g1 c", "g2 a", "g2 b", "g2 c", "g3 a", "g3 b", "g3 c"
            ]
        );
    }

    #[test]
    fn a_copy_listed_after_the_truncation_is_not_read_again() {
        let (dir, log, mut t) = app_log_and_copies();
        append(&log, "old a\nold b\n");
        assert_eq!(collect(&mut t), ["old a", "old b"]);
        append(&log, "old c\n");
        // The copy's final name appears only after the truncation was seen.
        let staging = dir.path().join("staging");
        std::fs::copy(&log, &staging).unwrap();
        std::fs::write(&log, "").unwrap();
        append(&log, "new a\n");
        let mut got = collect(&mut t);
        std::fs::rename(&staging, dir.path().join("app.log.1")).unwrap();
        got.extend(collect(&mut t));
        got.extend(collect(&mut t));
        got.sort();
        assert_eq!(got, ["new a", "old c"]);
    }

    #[test]
    fn checkpoints_resume_where_reading_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        append(&log, "a\nb\n");
        let glob = format!("{}/*.log", dir.path().display());
        let mut t =
            FileTailer::new(std::slice::from_ref(&glob), &[], StartAt::Beginning, &[]).unwrap();
        assert_eq!(collect(&mut t), ["a", "b"]);
        let saved = t.checkpoints();
        drop(t);
        append(&log, "c\n");
        let mut t = FileTailer::new(&[glob], &[], StartAt::End, &saved).unwrap();
        assert_eq!(collect(&mut t), ["c"], "resumes after b, does not skip c");
    }

    #[test]
    fn excluded_and_invalid_globs() {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("a.log"), "x\n");
        append(&dir.path().join("b.log"), "y\n");
        let inc = format!("{}/*.log", dir.path().display());
        let exc = format!("{}/b.log", dir.path().display());
        let mut t = FileTailer::new(&[inc], &[exc], StartAt::Beginning, &[]).unwrap();
        assert_eq!(collect(&mut t), ["x"]);
        assert!(FileTailer::new(&["[".into()], &[], StartAt::End, &[]).is_err());
    }

    #[test]
    fn directories_are_the_globs_fixed_parts() {
        let include = [
            "/var/log/*.log".to_string(),
            "/var/log/syslog".to_string(),
            "/srv/*/logs/app.log".to_string(),
        ];
        let t = FileTailer::new(&include, &[], StartAt::End, &[]).unwrap();
        assert_eq!(
            t.directories(),
            [PathBuf::from("/var/log"), PathBuf::from("/srv")]
        );
    }
}
