//! The agent's sources: file tailers (one thread each), syslog over UDP and TCP and stdin
//! (tasks). They hand lines to the pipeline thread in batches through one bounded channel,
//! so a slow pipeline makes TCP and HTTP senders wait and leaves UDP datagrams in the kernel.
//!
//! [`Sources`] owns what runs and applies a reloaded source list: sources whose configuration
//! did not change keep running (and their positions); changed ones restart; removed ones stop.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opsloop_core::config::SourceConfig;
use opsloop_core::ingest::IngestedRecord;
use opsloop_logs::parse::Format;
use opsloop_logs::pipeline::SourceSpec;
use opsloop_logs::rules::RuleSet;
use opsloop_logs::tail::{FileTailer, StartAt, TailCheckpoint};
use opsloop_server::{AgentMetrics, Counter, SourceLabel};
use opsloop_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest syslog frame accepted (RFC 5425 asks receivers to take at least 8 KiB).
const MAX_FRAME: usize = 64 * 1024;
/// Longest line kept from stdin (as from files); the rest of it is skipped.
const MAX_LINE: usize = 1 << 20;
/// A batch is sent when it holds this many lines...
const BATCH_LINES: usize = 512;
/// ...or this many bytes. With the channel's capacity this bounds what waits for the pipeline.
const BATCH_BYTES: usize = 32 * 1024;
/// Inputs waiting for the pipeline thread.
pub const INPUT_CAPACITY: usize = 1_024;
/// Position snapshots a tailer keeps while their lines are in flight.
const MAX_SNAPSHOTS: usize = 4_096;

/// What sources (and the reload loop) send the pipeline thread.
pub enum Input {
    /// Lines of one source.
    Lines(LineBatch),
    /// A record from `POST /api/v1/logs`.
    Record(IngestedRecord),
    /// A reloaded, fully validated rule set.
    Rules(Box<RuleSet>),
    /// A source started or restarted with this parsing.
    Source(String, SourceSpec),
}

/// Lines of one source, in one buffer.
pub struct LineBatch {
    /// The source's name.
    pub source: Arc<str>,
    text: String,
    ends: Vec<u32>,
    /// For file sources: the tailer's count of lines sent, through the last of this batch,
    /// and where the pipeline reports how many of them are durable (events stored).
    pub progress: Option<(Arc<AtomicU64>, u64)>,
}

impl LineBatch {
    fn new(source: &Arc<str>) -> LineBatch {
        LineBatch {
            source: Arc::clone(source),
            text: String::with_capacity(BATCH_BYTES),
            ends: Vec::with_capacity(BATCH_LINES),
            progress: None,
        }
    }

    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends.push(self.text.len() as u32);
    }

    fn is_full(&self) -> bool {
        self.ends.len() >= BATCH_LINES || self.text.len() >= BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = self.text.get(start..end as usize).unwrap_or("");
            start = end as usize;
            line
        })
    }
}

/// A source's line and byte counters, looked up once rather than per line.
#[derive(Clone)]
struct SourceCounters {
    lines: Counter,
    bytes: Counter,
}

impl SourceCounters {
    fn new(metrics: &AgentMetrics, source: &str) -> SourceCounters {
        let label = SourceLabel {
            source: source.to_string(),
        };
        SourceCounters {
            lines: metrics.lines_read.get_or_create(&label).clone(),
            bytes: metrics.bytes_read.get_or_create(&label).clone(),
        }
    }

    fn count(&self, bytes: usize) {
        self.lines.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

/// How a source's lines are parsed.
pub fn spec_of(source: &SourceConfig) -> SourceSpec {
    match source {
        SourceConfig::Syslog { .. } => SourceSpec {
            format: Some(Format::Syslog),
            multiline: Some(false),
        },
        SourceConfig::Stdin { parser, .. } => SourceSpec {
            format: parse_format(parser),
            multiline: None,
        },
        SourceConfig::File {
            parser, multiline, ..
        } => SourceSpec {
            format: parse_format(parser),
            multiline: match multiline.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
        },
    }
}

fn parse_format(name: &str) -> Option<Format> {
    if name == "auto" {
        None
    } else {
        name.parse().ok()
    }
}

fn name_of(source: &SourceConfig) -> &str {
    match source {
        SourceConfig::Syslog { name, .. }
        | SourceConfig::Stdin { name, .. }
        | SourceConfig::File { name, .. } => name,
    }
}

/// One running source.
struct Running {
    config: SourceConfig,
    tasks: Vec<JoinHandle<()>>,
    thread: Option<(std::thread::JoinHandle<()>, Arc<AtomicBool>)>,
}

/// The running sources.
pub struct Sources {
    running: HashMap<String, Running>,
    input: mpsc::Sender<Input>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<AgentMetrics>,
}

impl Sources {
    /// No sources yet; `input` is the pipeline's channel.
    pub fn new(
        input: mpsc::Sender<Input>,
        store: Arc<Mutex<Store>>,
        metrics: Arc<AgentMetrics>,
    ) -> Sources {
        Sources {
            running: HashMap::new(),
            input,
            store,
            metrics,
        }
    }

    /// Makes `wanted` the running set: unchanged sources keep running, changed ones restart,
    /// removed ones stop, new ones start. Returns the names started or restarted. A source
    /// that fails to start (an address in use, a bad glob) is reported and left out, the
    /// others still apply.
    pub async fn apply(&mut self, wanted: &[SourceConfig]) -> (Vec<String>, Vec<anyhow::Error>) {
        let keep: HashMap<&str, &SourceConfig> = wanted.iter().map(|s| (name_of(s), s)).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| keep.get(name.as_str()) != Some(&&r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.running.remove(&name) {
                tracing::info!(source = %name, "stopping source");
                stop(r).await;
            }
        }
        let (mut started, mut errors) = (Vec::new(), Vec::new());
        for source in wanted {
            let name = name_of(source);
            if self.running.contains_key(name) {
                continue;
            }
            // The pipeline learns the parsing before the first line can arrive.
            if self
                .input
                .send(Input::Source(name.to_string(), spec_of(source)))
                .await
                .is_err()
            {
                break;
            }
            match self.start(source).await {
                Ok(r) => {
                    self.running.insert(name.to_string(), r);
                    started.push(name.to_string());
                }
                Err(e) => errors.push(e.context(format!("source {name}"))),
            }
        }
        (started, errors)
    }

    async fn start(&self, source: &SourceConfig) -> Result<Running> {
        let counters = SourceCounters::new(&self.metrics, name_of(source));
        let mut running = Running {
            config: source.clone(),
            tasks: Vec::new(),
            thread: None,
        };
        match source {
            SourceConfig::Syslog { name, udp, tcp } => {
                let name: Arc<str> = Arc::from(name.as_str());
                if let Some(addr) = udp {
                    let socket = bind_udp(addr)
                        .await
                        .with_context(|| format!("syslog udp {addr}"))?;
                    tracing::info!(source = %name, addr = %socket.local_addr()?, "syslog listening on udp");
                    let drops = self
                        .metrics
                        .udp_drops
                        .get_or_create(&SourceLabel {
                            source: name.to_string(),
                        })
                        .clone();
                    running.tasks.push(tokio::spawn(syslog_udp(
                        socket,
                        Arc::clone(&name),
                        self.input.clone(),
                        counters.clone(),
                        drops,
                    )));
                }
                if let Some(addr) = tcp {
                    let listener = match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            stop(running).await;
                            return Err(e).with_context(|| format!("syslog tcp {addr}"));
                        }
                    };
                    tracing::info!(source = %name, addr = %listener.local_addr()?, "syslog listening on tcp");
                    running.tasks.push(tokio::spawn(syslog_tcp(
                        listener,
                        Arc::clone(&name),
                        self.input.clone(),
                        counters,
                    )));
                }
            }
            SourceConfig::Stdin { name, .. } => {
                running.tasks.push(tokio::spawn(stdin_lines(
                    Arc::from(name.as_str()),
                    self.input.clone(),
                    counters,
                )));
            }
            SourceConfig::File {
                name,
                include,
                exclude,
                start_at,
                ..
            } => {
                let key = format!("tail:{name}");
                let saved: Vec<TailCheckpoint> = self
                    .store
                    .lock()
                    .ok()
                    .and_then(|s| s.checkpoint(&key).ok().flatten())
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
                let start = if start_at == "beginning" {
                    StartAt::Beginning
                } else {
                    StartAt::End
                };
                let tailer = FileTailer::new(include, exclude, start, &saved)?;
                let stop = Arc::new(AtomicBool::new(false));
                let thread = spawn_tailer(
                    tailer,
                    Arc::from(name.as_str()),
                    key,
                    self.input.clone(),
                    Arc::clone(&self.store),
                    counters,
                    Arc::clone(&stop),
                )?;
                running.thread = Some((thread, stop));
            }
        }
        Ok(running)
    }

    /// Stops every source; file tailers save their positions.
    pub async fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            stop(r).await;
        }
    }
}

async fn stop(running: Running) {
    for t in &running.tasks {
        t.abort();
    }
    for t in running.tasks {
        let _ = t.await;
    }
    if let Some((thread, stop)) = running.thread {
        stop.store(true, Ordering::Release);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// A thread that polls a file source, sends its lines in batches and persists positions.
///
/// A position is saved only once the pipeline reported every line before it durable (its
/// events in the store): the thread keeps a snapshot of positions per poll, tagged with the
/// count of lines sent, and saves the newest snapshot the pipeline's count has reached. A
/// crash therefore replays lines (at most those in flight), and never skips one.
/// How long an idle file source waits before polling again without a change notification.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Wakes a file source's thread when something changes in its directories, so new and
/// rotated files are seen within milliseconds. Only a hint: polling every [`POLL_INTERVAL`]
/// remains (inotify is silent on NFS, and watches are limited in number).
fn watch_directories(
    dirs: &[std::path::PathBuf],
) -> (
    Option<notify::RecommendedWatcher>,
    std::sync::mpsc::Receiver<()>,
) {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.map_or(true, |e| wakes_tailer(e.kind)) {
            // One pending wake-up is enough, however many changes there were.
            let _ = tx.try_send(());
        }
    });
    match watcher {
        Ok(mut w) => {
            for dir in dirs {
                if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
                    tracing::debug!(dir = %dir.display(), error = %e, "not watching; polling only");
                }
            }
            (Some(w), rx)
        }
        Err(e) => {
            tracing::debug!(error = %e, "no file watcher; polling only");
            (None, rx)
        }
    }
}

/// Changes of content and names wake a file source; its own opens and reads (and the
/// timestamps they touch) must not, or an idle source would wake itself forever.
fn wakes_tailer(kind: notify::EventKind) -> bool {
    use notify::EventKind::{Create, Modify, Remove};
    use notify::event::ModifyKind::Metadata;
    matches!(kind, Create(_) | Remove(_) | Modify(_)) && !matches!(kind, Modify(Metadata(_)))
}

fn wait_for_change(changes: &std::sync::mpsc::Receiver<()>) {
    match changes.recv_timeout(POLL_INTERVAL) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
    }
}

fn spawn_tailer(
    mut tailer: FileTailer,
    source: Arc<str>,
    key: String,
    tx: mpsc::Sender<Input>,
    store: Arc<Mutex<Store>>,
    counters: SourceCounters,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let durable = Arc::new(AtomicU64::new(0));
    let save = move |positions: &[TailCheckpoint]| {
        let text = serde_json::to_string(positions).unwrap_or_default();
        if let Ok(mut s) = store.lock()
            && let Err(e) = s.put_checkpoint(&key, &text, opsloop_core::time::now_ms())
        {
            tracing::error!(error = %e, "saving checkpoints failed");
        }
    };
    let (watcher, changes) = watch_directories(&tailer.directories());
    let thread = std::thread::Builder::new()
        .name(format!("opsloop-tail-{source}"))
        .spawn(move || {
            let _watcher = watcher; // lives as long as the thread
            let mut sent = 0u64;
            let mut snapshots: VecDeque<(u64, Vec<TailCheckpoint>)> = VecDeque::new();
            let mut last_save = Instant::now();
            let mut batch = LineBatch::new(&source);
            let mut closed = false;
            let send = |batch: &mut LineBatch, sent: u64| {
                if batch.is_empty() {
                    return true;
                }
                let mut full = std::mem::replace(batch, LineBatch::new(&source));
                full.progress = Some((Arc::clone(&durable), sent));
                tx.blocking_send(Input::Lines(full)).is_ok()
            };
            let save_durable = |snapshots: &mut VecDeque<(u64, Vec<TailCheckpoint>)>,
                                durable: u64| {
                let mut newest = None;
                while snapshots.front().is_some_and(|(seq, _)| *seq <= durable) {
                    newest = snapshots.pop_front();
                }
                if let Some((_, positions)) = newest {
                    save(&positions);
                }
            };
            while !stop.load(Ordering::Acquire) && !closed {
                let read = tailer.poll(&mut |_, line| {
                    counters.count(line.len() + 1);
                    batch.push(line);
                    sent += 1;
                    if batch.is_full() {
                        closed |= !send(&mut batch, sent);
                    }
                });
                closed |= !send(&mut batch, sent);
                if read > 0 || snapshots.is_empty() {
                    if snapshots.len() >= MAX_SNAPSHOTS {
                        // Keep the oldest (the next to save) and thin out the rest.
                        snapshots.remove(1);
                    }
                    snapshots.push_back((sent, tailer.checkpoints()));
                }
                if last_save.elapsed() >= Duration::from_secs(1) {
                    save_durable(&mut snapshots, durable.load(Ordering::Acquire));
                    last_save = Instant::now();
                }
                if read == 0 {
                    wait_for_change(&changes);
                }
            }
            // Give the pipeline a moment to make the lines sent durable, then save.
            let deadline = Instant::now() + Duration::from_secs(5);
            while durable.load(Ordering::Acquire) < sent && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            save_durable(&mut snapshots, durable.load(Ordering::Acquire));
        })?;
    Ok(thread)
}

/// The metrics label of records from the API, whatever `source` they name (a label per
/// client-chosen name would let clients grow the metrics without bound).
pub const INGEST_SOURCE: &str = "http";

/// Records from the API go through a small task into the pipeline's channel.
pub fn forward_ingest(
    input: mpsc::Sender<Input>,
    metrics: &AgentMetrics,
) -> mpsc::Sender<IngestedRecord> {
    let (tx, mut rx) = mpsc::channel::<IngestedRecord>(1_000);
    let counters = SourceCounters::new(metrics, INGEST_SOURCE);
    tokio::spawn(async move {
        while let Some(rec) = rx.recv().await {
            counters.count(rec.message.len());
            if input.send(Input::Record(rec)).await.is_err() {
                break;
            }
        }
    });
    tx
}

/// One received frame into a batch: counted, decoded (invalid UTF-8 replaced), trailing
/// newlines and NULs cut, empty frames dropped.
fn push_frame(batch: &mut LineBatch, counters: &SourceCounters, raw: &[u8]) {
    counters.count(raw.len());
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    if !text.is_empty() {
        batch.push(text);
    }
}

async fn send_batch(tx: &mpsc::Sender<Input>, batch: &mut LineBatch) -> bool {
    if batch.is_empty() {
        return true;
    }
    let source = Arc::clone(&batch.source);
    let full = std::mem::replace(batch, LineBatch::new(&source));
    tx.send(Input::Lines(full)).await.is_ok()
}

/// Receive buffer asked for syslog UDP sockets: bursts wait in the kernel instead of being
/// dropped (the kernel caps it at `net.core.rmem_max`).
const UDP_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// A UDP socket bound to `addr` with a large receive buffer.
async fn bind_udp(addr: &str) -> std::io::Result<tokio::net::UdpSocket> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a smaller buffer still works, it only drops sooner.
        let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
        socket.set_nonblocking(true)?;
        match socket.bind(&sa.into()) {
            Ok(()) => return tokio::net::UdpSocket::from_std(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("address resolves to nothing")))
}

/// Datagrams the kernel dropped on `socket` (receive buffer full), from `/proc/net/udp*`;
/// `None` where that is not available.
fn kernel_udp_drops(socket: &tokio::net::UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .ok()?
        .ino()
        .to_string();
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|row| {
                let cols: Vec<&str> = row.split_whitespace().collect();
                // sl local rem st queues tr retrnsmt uid timeout inode ref pointer drops
                (cols.get(9) == Some(&inode.as_str()))
                    .then(|| cols.last().and_then(|d| d.parse().ok()))
                    .flatten()
            })
        })
}

async fn syslog_udp(
    socket: tokio::net::UdpSocket,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    counters: SourceCounters,
    drops: Counter,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut batch = LineBatch::new(&source);
    let mut drop_check = tokio::time::interval(Duration::from_secs(1));
    let mut dropped = kernel_udp_drops(&socket).unwrap_or(0);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = drop_check.tick() => {
                if let Some(now) = kernel_udp_drops(&socket) {
                    drops.inc_by(now.saturating_sub(dropped));
                    dropped = now;
                }
                continue;
            }
        };
        let Ok((n, _)) = received else {
            continue;
        };
        push_frame(&mut batch, &counters, &buf[..n]);
        // Take what else is already queued, without waiting, into the same batch.
        while !batch.is_full() {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => push_frame(&mut batch, &counters, &buf[..n]),
                Err(_) => break,
            }
        }
        if !send_batch(&tx, &mut batch).await {
            return;
        }
    }
}

async fn syslog_tcp(
    listener: tokio::net::TcpListener,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    counters: SourceCounters,
) {
    // Connections live in this task's set: stopping the source closes them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            Some(_) = connections.join_next() => continue,
        };
        let (source, tx, counters) = (Arc::clone(&source), tx.clone(), counters.clone());
        connections.spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut frame = Vec::new();
            let mut batch = LineBatch::new(&source);
            loop {
                frame.clear();
                // Send what was batched before waiting for more bytes.
                if reader.buffer().is_empty() && !send_batch(&tx, &mut batch).await {
                    return;
                }
                // RFC 6587: octet counting (`LEN SP MSG`) or newline framing, per frame.
                let first = match reader.fill_buf().await {
                    Ok([]) | Err(_) => break,
                    Ok(b) => b[0],
                };
                if first.is_ascii_digit() {
                    // At most 12 bytes of length: a peer sending digits forever is cut off.
                    let mut len_bytes = Vec::new();
                    if (&mut reader)
                        .take(12)
                        .read_until(b' ', &mut len_bytes)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let len: usize = match std::str::from_utf8(&len_bytes)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        Some(l) if l <= MAX_FRAME => l,
                        _ => break, // malformed framing: drop the connection, not the agent
                    };
                    frame.resize(len, 0);
                    if reader.read_exact(&mut frame).await.is_err() {
                        break;
                    }
                } else {
                    match read_line_bounded(&mut reader, &mut frame, MAX_FRAME).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                push_frame(&mut batch, &counters, &frame);
                if batch.is_full() && !send_batch(&tx, &mut batch).await {
                    return;
                }
            }
            // The connection ended: what arrived before still counts.
            send_batch(&tx, &mut batch).await;
        });
    }
}

/// Reads one line (through `\n`) into `buf`, keeping at most `max` bytes of it and skipping
/// the rest, so input that never sends a newline cannot grow memory. Returns the bytes
/// consumed, 0 at the end of the input.
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let end = available.iter().position(|&b| b == b'\n').map(|i| i + 1);
        let chunk = &available[..end.unwrap_or(available.len())];
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if end.is_some() {
            return Ok(consumed);
        }
    }
}

async fn stdin_lines(source: Arc<str>, tx: mpsc::Sender<Input>, counters: SourceCounters) {
    let mut reader = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut batch = LineBatch::new(&source);
    loop {
        line.clear();
        if reader.buffer().is_empty() && !send_batch(&tx, &mut batch).await {
            return;
        }
        match read_line_bounded(&mut reader, &mut line, MAX_LINE).await {
            Ok(0) | Err(_) => break,
            Ok(_) => push_frame(&mut batch, &counters, &line),
        }
        if batch.is_full() && !send_batch(&tx, &mut batch).await {
            return;
        }
    }
    send_batch(&tx, &mut batch).await;
}

#[cfg(test)]
mod tests {
    use super::wakes_tailer;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind};

    #[tokio::test]
    async fn lines_are_cut_at_the_limit_and_the_rest_skipped() {
        let mut input: &[u8] = b"short\nthis one is far too long\nnext\nno newline at end";
        let mut reader = tokio::io::BufReader::with_capacity(4, &mut input);
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            match super::read_line_bounded(&mut reader, &mut line, 8).await {
                Ok(0) | Err(_) => break,
                Ok(_) => lines.push(String::from_utf8_lossy(&line).into_owned()),
            }
        }
        assert_eq!(lines, ["short\n", "this one", "next\n", "no newli"]);
    }

    #[test]
    fn only_content_and_name_changes_wake_a_file_source() {
        assert!(wakes_tailer(EventKind::Create(CreateKind::File)));
        assert!(wakes_tailer(EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(wakes_tailer(EventKind::Modify(ModifyKind::Name(
            notify::event::RenameMode::To
        ))));
        assert!(!wakes_tailer(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!wakes_tailer(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!wakes_tailer(EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
    }
}
