//! The agent's sources behind one [`Source`] trait: files (a tailer thread each), syslog over
//! UDP and TCP, and stdin. They hand lines to the pipeline thread in [`LineBatch`]es through one
//! bounded channel, so a slow pipeline makes TCP senders wait and leaves UDP datagrams in the
//! kernel.
//!
//! Every source runs under the [`Supervisor`]: one that fails (a socket error, a tailer thread
//! that panics, a store it cannot read) is restarted with backoff. [`Sources`] applies a
//! reloaded source list: sources whose configuration did not change keep running (and their
//! positions); changed ones restart; removed ones stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use opsloop_core::Event;
use opsloop_core::config::{Multiline, ParserKind, SourceConfig, StartAt as StartAtConfig};
use opsloop_core::time::Clock;
use opsloop_logs::parse::Format;
use opsloop_logs::pipeline::SourceSpec;
use opsloop_logs::tail::{FileTailer, StartAt, TailCheckpoint};
use opsloop_metrics::{AgentMetrics, Counter, SourceLabel};
use opsloop_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::batch::{Input, LineBatch, SourceCounters, push_frame};
use crate::checkpoint::{self, CheckpointError, Snapshots};
use crate::framing::FrameCodec;
use crate::supervisor::{OnFailure, Supervisor, TaskError, TaskHandle};
use crate::udp::{bind_udp, kernel_udp_drops};

/// What every source needs.
pub struct SourceContext {
    /// The pipeline's channel.
    pub input: mpsc::Sender<Input>,
    /// Where file positions are saved.
    pub store: Arc<Mutex<Store>>,
    /// Counters.
    pub metrics: Arc<AgentMetrics>,
    /// The `source` attribute of events the agent itself reports.
    pub event_source: String,
    /// The time of checkpoints and of the events sources report.
    pub clock: Arc<dyn Clock>,
}

/// Tells whoever started a source whether it came up (bound its socket, opened its files).
#[derive(Clone)]
pub struct Started(Arc<Mutex<Option<StartReply>>>);

/// Where a source's start is reported: `Err` with why it did not come up.
type StartReply = oneshot::Sender<Result<(), String>>;

impl Started {
    fn new() -> (Started, oneshot::Receiver<Result<(), String>>) {
        let (tx, rx) = oneshot::channel();
        (Started(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// The source is up. Only the first word counts.
    pub fn ok(&self) {
        self.send(Ok(()));
    }

    fn fail(&self, message: String) {
        self.send(Err(message));
    }

    fn send(&self, r: Result<(), String>) {
        if let Some(tx) = self.0.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(r);
        }
    }
}

/// One input of the agent.
pub trait Source: Send + Sync + 'static {
    /// Opens what the source reads, calls `started.ok()`, then reads until `cancel`. Called
    /// again after a failure.
    fn run(
        self: Arc<Self>,
        ctx: Arc<SourceContext>,
        started: Started,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), TaskError>>;
}

/// The source of `config`.
pub fn source_of(config: &SourceConfig) -> Arc<dyn Source> {
    match config {
        SourceConfig::File {
            name,
            include,
            exclude,
            start_at,
            max_line_bytes,
            ..
        } => Arc::new(FileSource {
            name: Arc::from(name.as_str()),
            include: include.clone(),
            exclude: exclude.clone(),
            start_at: match start_at {
                StartAtConfig::End => StartAt::End,
                StartAtConfig::Beginning => StartAt::Beginning,
            },
            max_line: *max_line_bytes,
        }),
        SourceConfig::Syslog {
            name,
            udp,
            tcp,
            max_line_bytes,
            max_connections,
        } => Arc::new(SyslogSource {
            name: Arc::from(name.as_str()),
            udp: udp.clone(),
            tcp: tcp.clone(),
            max_frame: *max_line_bytes,
            max_connections: *max_connections,
        }),
        SourceConfig::Stdin {
            name,
            max_line_bytes,
            ..
        } => Arc::new(StdinSource {
            name: Arc::from(name.as_str()),
            max_line: *max_line_bytes,
        }),
    }
}

/// How a source's lines are parsed.
pub fn spec_of(source: &SourceConfig) -> SourceSpec {
    match source {
        SourceConfig::Syslog { .. } => SourceSpec {
            format: Some(Format::Syslog),
            multiline: Some(false),
            max_message: Some(source.max_line_bytes()),
        },
        SourceConfig::Stdin { parser, .. } => SourceSpec {
            format: format_of(*parser),
            multiline: None,
            max_message: Some(source.max_line_bytes()),
        },
        SourceConfig::File {
            parser, multiline, ..
        } => SourceSpec {
            format: format_of(*parser),
            multiline: match multiline {
                Multiline::On => Some(true),
                Multiline::Off => Some(false),
                Multiline::Auto => None,
            },
            max_message: Some(source.max_line_bytes()),
        },
    }
}

fn format_of(parser: ParserKind) -> Option<Format> {
    Some(match parser {
        ParserKind::Auto => return None,
        ParserKind::Raw => Format::Raw,
        ParserKind::Json => Format::Json,
        ParserKind::Logfmt => Format::Logfmt,
        ParserKind::Syslog => Format::Syslog,
        ParserKind::Access => Format::Access,
        ParserKind::Klog => Format::Klog,
        ParserKind::Plain => Format::Plain,
    })
}

/// One running source.
struct Running {
    config: SourceConfig,
    task: TaskHandle,
}

/// Why a source did not start.
#[derive(Debug, thiserror::Error)]
#[error("source {name}: {message}")]
pub struct SourceError {
    /// The source.
    pub name: String,
    /// Why.
    pub message: String,
}

/// The running sources.
pub struct Sources {
    running: HashMap<String, Running>,
    ctx: Arc<SourceContext>,
    supervisor: Supervisor,
}

impl Sources {
    /// No sources yet.
    pub fn new(ctx: SourceContext, supervisor: Supervisor) -> Sources {
        Sources {
            running: HashMap::new(),
            ctx: Arc::new(ctx),
            supervisor,
        }
    }

    /// Makes `wanted` the running set: unchanged sources keep running, changed ones restart,
    /// removed ones stop, new ones start. Returns the names started or restarted. A source
    /// that fails to start (an address in use, a bad glob) is reported and left out; the
    /// others still apply.
    pub async fn apply(&mut self, wanted: &[SourceConfig]) -> (Vec<String>, Vec<SourceError>) {
        let keep: HashMap<&str, &SourceConfig> = wanted.iter().map(|s| (s.name(), s)).collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| keep.get(name.as_str()) != Some(&&r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.running.remove(&name) {
                tracing::info!(source = %name, "stopping source");
                r.task.stop().await;
            }
        }
        let (mut started, mut errors) = (Vec::new(), Vec::new());
        for config in wanted {
            let name = config.name();
            if self.running.contains_key(name) {
                continue;
            }
            match self.start(config).await {
                Ok(task) => {
                    self.running.insert(
                        name.to_string(),
                        Running {
                            config: config.clone(),
                            task,
                        },
                    );
                    started.push(name.to_string());
                }
                Err(message) => errors.push(SourceError {
                    name: name.to_string(),
                    message,
                }),
            }
        }
        (started, errors)
    }

    async fn start(&self, config: &SourceConfig) -> Result<TaskHandle, String> {
        let source = source_of(config);
        let (started, up) = Started::new();
        let (name, spec) = (config.name().to_string(), spec_of(config));
        let ctx = Arc::clone(&self.ctx);
        let task = self.supervisor.spawn(
            format!("source/{name}"),
            OnFailure::Restart,
            move |cancel| {
                let (source, ctx, started) =
                    (Arc::clone(&source), Arc::clone(&ctx), started.clone());
                let (name, spec) = (name.clone(), spec.clone());
                async move {
                    // The pipeline learns the parsing (and that counts start from zero)
                    // before the first line of this run can arrive.
                    if ctx.input.send(Input::Source(name, spec)).await.is_err() {
                        return Ok(()); // the pipeline is gone: shutting down
                    }
                    // A panic is a failure like an error: reported to whoever waits for the
                    // start, and restarted by the supervisor.
                    let r = std::panic::AssertUnwindSafe(source.run(ctx, started.clone(), cancel))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(TaskError::new("panicked")));
                    if let Err(e) = &r {
                        started.fail(e.0.clone());
                    }
                    r
                }
            },
        );
        // A source that neither came up nor failed in time keeps trying under supervision.
        match tokio::time::timeout(START_TIMEOUT, up).await {
            Ok(Ok(Ok(()))) | Ok(Err(_)) => Ok(task),
            Err(_) => {
                tracing::warn!(source = %config.name(), "source not up yet; it keeps trying");
                Ok(task)
            }
            Ok(Ok(Err(message))) => {
                task.stop().await;
                Err(message)
            }
        }
    }

    /// Stops every source at once (each file source may wait a moment for its lines to become
    /// durable, so not one after the other); file sources save their positions.
    pub async fn stop_all(&mut self) {
        futures_util::future::join_all(self.running.drain().map(|(_, r)| r.task.stop())).await;
    }
}

/// How long starting a source may take before it is left to keep trying under supervision.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to read saved positions before a file source fails (and is restarted).
const CHECKPOINT_READ_ATTEMPTS: u32 = 5;

/// How long an idle file source waits before polling again without a change notification.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a stopping file source waits for its lines to become durable before saving.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Files by glob: a thread polls a [`FileTailer`], woken by inotify.
struct FileSource {
    name: Arc<str>,
    include: Vec<String>,
    exclude: Vec<String>,
    start_at: StartAt,
    max_line: usize,
}

impl Source for FileSource {
    fn run(
        self: Arc<Self>,
        ctx: Arc<SourceContext>,
        started: Started,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), TaskError>> {
        async move {
            let key = format!("tail:{}", self.name);
            let checkpoint_errors = ctx
                .metrics
                .checkpoint_errors
                .get_or_create(&SourceLabel {
                    source: self.name.to_string(),
                })
                .clone();
            let mut loaded = checkpoint::load(&ctx.store, &key);
            let mut delay = Duration::from_millis(100);
            for _ in 1..CHECKPOINT_READ_ATTEMPTS {
                if !matches!(loaded, Err(CheckpointError::Store { .. })) {
                    break;
                }
                // A busy or failing store may recover: try again before failing the source.
                checkpoint_errors.inc();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                delay *= 2;
                loaded = checkpoint::load(&ctx.store, &key);
            }
            let (saved, start_at) = match loaded {
                Ok(saved) => (saved, self.start_at),
                Err(e @ CheckpointError::Store { .. }) => {
                    checkpoint_errors.inc();
                    return Err(TaskError::new(e));
                }
                Err(e @ CheckpointError::Corrupt { .. }) => {
                    // Positions lost: read every file from its start (lines again, never
                    // lines skipped), and say so loudly.
                    checkpoint_errors.inc();
                    tracing::error!(source = %self.name, error = %e, "saved positions unreadable; reading the files from the beginning");
                    let event =
                        checkpoint_problem(&ctx.event_source, &self.name, &e, ctx.clock.now_ms());
                    let _ = ctx.input.send(Input::Event(Box::new(event))).await;
                    (Vec::new(), StartAt::Beginning)
                }
            };
            let tailer = FileTailer::new(&self.include, &self.exclude, start_at, &saved)
                .map_err(TaskError::new)?;
            let stop = Arc::new(AtomicBool::new(false));
            let thread = spawn_tailer(
                tailer,
                Arc::clone(&self.name),
                key,
                Arc::clone(&ctx),
                SourceCounters::new(&ctx.metrics, &self.name),
                checkpoint_errors,
                Arc::clone(&stop),
                self.max_line,
            )
            .map_err(TaskError::new)?;
            started.ok();
            let mut joined = tokio::task::spawn_blocking(move || thread.join());
            let result = tokio::select! {
                r = &mut joined => r,
                _ = cancel.cancelled() => {
                    stop.store(true, Ordering::Release);
                    joined.await
                }
            };
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(TaskError::new("tailer thread panicked")),
                Err(e) => Err(TaskError::new(e)),
            }
        }
        .boxed()
    }
}

/// The event of saved positions that could not be read.
fn checkpoint_problem(event_source: &str, source: &str, e: &CheckpointError, now_ms: i64) -> Event {
    let origin = opsloop_logs::events::Origin {
        source: event_source,
        input: source,
    };
    opsloop_logs::events::input_problem(
        &origin,
        "checkpoint_unreadable",
        now_ms,
        serde_json::json!({
            "error": e.to_string(),
            "action": "reading from the beginning",
        }),
    )
}

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

/// A thread that polls a file source, sends its lines in batches and saves positions once
/// the pipeline reported their lines durable (see [`crate::checkpoint`]).
#[allow(clippy::too_many_arguments)]
fn spawn_tailer(
    tailer: FileTailer,
    source: Arc<str>,
    key: String,
    ctx: Arc<SourceContext>,
    counters: SourceCounters,
    checkpoint_errors: Counter,
    stop: Arc<AtomicBool>,
    max_line: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let durable = Arc::new(AtomicU64::new(0));
    let store = Arc::clone(&ctx.store);
    let clock = Arc::clone(&ctx.clock);
    let save = move |positions: &[TailCheckpoint]| {
        let text = match serde_json::to_string(positions) {
            Ok(t) => t,
            Err(e) => {
                checkpoint_errors.inc();
                tracing::error!(error = %e, "encoding positions failed");
                return;
            }
        };
        let saved = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())
            .and_then(|mut s| {
                s.put_checkpoint(&key, &text, clock.now_ms())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            checkpoint_errors.inc();
            tracing::error!(error = %e, "saving positions failed; they are saved again later");
        }
    };
    let mut tailer = tailer.with_max_line(max_line);
    let (watcher, changes) = watch_directories(&tailer.directories());
    let tx = ctx.input.clone();
    std::thread::Builder::new()
        .name(format!("opsloop-tail-{source}"))
        .spawn(move || {
            let _watcher = watcher; // lives as long as the thread
            let mut sent = 0u64;
            let mut snapshots = Snapshots::default();
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
            while !stop.load(Ordering::Acquire) && !closed {
                let read = tailer.poll(&mut |_, line, flags| {
                    counters.count(line.len() + 1);
                    counters.count_problems(flags.cut, flags.invalid_utf8);
                    batch.push_flagged(line, flags.cut, flags.invalid_utf8);
                    sent += 1;
                    if batch.is_full() {
                        closed |= !send(&mut batch, sent);
                    }
                });
                closed |= !send(&mut batch, sent);
                snapshots.record(sent, read, || tailer.checkpoints());
                if last_save.elapsed() >= Duration::from_secs(1) {
                    if let Some(p) = snapshots.take_durable(durable.load(Ordering::Acquire)) {
                        save(&p);
                    }
                    last_save = Instant::now();
                }
                if read == 0 {
                    wait_for_change(&changes);
                }
            }
            // Give the pipeline a moment to make the lines sent durable, then save.
            let deadline = Instant::now() + STOP_GRACE;
            while durable.load(Ordering::Acquire) < sent && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(p) = snapshots.take_durable(durable.load(Ordering::Acquire)) {
                save(&p);
            }
        })
}

/// Syslog listeners: UDP, TCP or both.
struct SyslogSource {
    name: Arc<str>,
    udp: Option<String>,
    tcp: Option<String>,
    max_frame: usize,
    max_connections: usize,
}

impl Source for SyslogSource {
    fn run(
        self: Arc<Self>,
        ctx: Arc<SourceContext>,
        started: Started,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), TaskError>> {
        async move {
            let counters = SourceCounters::new(&ctx.metrics, &self.name);
            let label = SourceLabel {
                source: self.name.to_string(),
            };
            let udp = match &self.udp {
                Some(addr) => {
                    let socket = bind_udp(addr)
                        .await
                        .map_err(|e| TaskError(format!("syslog udp {addr}: {e}")))?;
                    tracing::info!(source = %self.name, addr = ?socket.local_addr().ok(), "syslog listening on udp");
                    Some(socket)
                }
                None => None,
            };
            let tcp = match &self.tcp {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| TaskError(format!("syslog tcp {addr}: {e}")))?;
                    tracing::info!(source = %self.name, addr = ?listener.local_addr().ok(), "syslog listening on tcp");
                    Some(listener)
                }
                None => None,
            };
            started.ok();
            let udp_task = udp.map(|socket| {
                syslog_udp(
                    socket,
                    Arc::clone(&self.name),
                    ctx.input.clone(),
                    counters.clone(),
                    ctx.metrics.udp_drops.get_or_create(&label).clone(),
                    self.max_frame,
                    cancel.clone(),
                )
            });
            let tcp_task = tcp.map(|listener| {
                syslog_tcp(
                    listener,
                    TcpLimits {
                        max_frame: self.max_frame,
                        max_connections: self.max_connections,
                    },
                    Arc::clone(&self.name),
                    ctx.input.clone(),
                    counters.clone(),
                    ctx.metrics
                        .syslog_tcp_connections_refused
                        .get_or_create(&label)
                        .clone(),
                    cancel.clone(),
                )
            });
            match (udp_task, tcp_task) {
                (Some(u), Some(t)) => {
                    // Either failing fails the source (both restart: one socket each way).
                    tokio::try_join!(u, t).map(|_| ())
                }
                (Some(u), None) => u.await,
                (None, Some(t)) => t.await,
                (None, None) => Ok(()),
            }
        }
        .boxed()
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

/// Receives datagrams until cancelled; a datagram longer than `max_frame` is cut.
async fn syslog_udp(
    socket: tokio::net::UdpSocket,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    counters: SourceCounters,
    drops: Counter,
    max_frame: usize,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    // One byte more than kept, to know that a datagram was longer.
    let keep = max_frame.min(65_536);
    let mut buf = vec![0u8; keep + 1];
    let mut batch = LineBatch::new(&source);
    let mut drop_check = tokio::time::interval(Duration::from_secs(1));
    let mut dropped = kernel_udp_drops(&socket).unwrap_or(0);
    let mut errors = 0u32;
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
            _ = cancel.cancelled() => return Ok(()),
        };
        let n = match received {
            Ok((n, _)) => {
                errors = 0;
                n
            }
            Err(e) => {
                // ICMP errors and the like are transient; a socket that keeps failing is
                // broken, and the source restarts with a new one.
                errors += 1;
                if errors > 100 {
                    return Err(TaskError(format!("udp receive keeps failing: {e}")));
                }
                continue;
            }
        };
        push_frame(&mut batch, &counters, &buf[..n.min(keep)], n > keep);
        // Take what else is already queued, without waiting, into the same batch.
        while !batch.is_full() {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => push_frame(&mut batch, &counters, &buf[..n.min(keep)], n > keep),
                Err(_) => break,
            }
        }
        if !send_batch(&tx, &mut batch).await {
            return Ok(());
        }
    }
}

/// Limits of a syslog TCP listener.
#[derive(Clone, Copy)]
struct TcpLimits {
    max_frame: usize,
    max_connections: usize,
}

/// Longest wait between accept attempts after an error such as running out of descriptors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

async fn syslog_tcp(
    listener: tokio::net::TcpListener,
    limits: TcpLimits,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    counters: SourceCounters,
    refused: Counter,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Connections live in this task's set: stopping the source closes them too.
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next() => continue,
            _ = cancel.cancelled() => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: the pending connection stays in
                // the backlog, so accepting again at once would spin. Wait, then retry.
                tracing::warn!(source = %source, error = %e, "accepting a syslog connection failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused.inc();
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                tracing::warn!(source = %source, max = limits.max_connections, "syslog connection refused: too many connections");
                last_refusal_log = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let (source, tx, counters, cancel) = (
            Arc::clone(&source),
            tx.clone(),
            counters.clone(),
            cancel.clone(),
        );
        connections.spawn(async move {
            let _slot = slot;
            let framed = FramedRead::new(stream, FrameCodec::syslog(limits.max_frame));
            read_frames(framed, &source, &tx, &counters, &cancel).await;
        });
    }
}

/// Reads frames into batches until the stream ends or `cancel`; what is batched is sent
/// before waiting for more bytes, so a quiet peer's lines are not held back.
async fn read_frames<R: tokio::io::AsyncRead + Unpin>(
    mut framed: FramedRead<R, FrameCodec>,
    source: &Arc<str>,
    tx: &mpsc::Sender<Input>,
    counters: &SourceCounters,
    cancel: &CancellationToken,
) -> bool {
    let mut batch = LineBatch::new(source);
    loop {
        let next = match framed.next().now_or_never() {
            Some(next) => next,
            None => {
                if !send_batch(tx, &mut batch).await {
                    return false;
                }
                tokio::select! {
                    n = framed.next() => n,
                    _ = cancel.cancelled() => break,
                }
            }
        };
        match next {
            Some(Ok(frame)) => push_frame(&mut batch, counters, &frame.data, frame.cut),
            // A read error ends this stream like its end does; what arrived before counts.
            Some(Err(_)) | None => break,
        }
        if batch.is_full() && !send_batch(tx, &mut batch).await {
            return false;
        }
    }
    send_batch(tx, &mut batch).await
}

/// Standard input, line by line.
struct StdinSource {
    name: Arc<str>,
    max_line: usize,
}

impl Source for StdinSource {
    fn run(
        self: Arc<Self>,
        ctx: Arc<SourceContext>,
        started: Started,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), TaskError>> {
        async move {
            started.ok();
            let counters = SourceCounters::new(&ctx.metrics, &self.name);
            let framed = FramedRead::new(tokio::io::stdin(), FrameCodec::lines(self.max_line));
            read_frames(framed, &self.name, &ctx.input, &counters, &cancel).await;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind};

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

    #[tokio::test]
    async fn frames_read_from_a_stream_keep_cut_lines_and_count_them() {
        let metrics = AgentMetrics::default();
        let counters = SourceCounters::new(&metrics, "s");
        let (tx, mut rx) = mpsc::channel(16);
        let input: &[u8] = b"ok\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\n6 <1>abc";
        let framed = FramedRead::new(input, FrameCodec::syslog(16));
        let source: Arc<str> = Arc::from("s");
        assert!(read_frames(framed, &source, &tx, &counters, &CancellationToken::new()).await);
        drop(tx);
        let mut lines = Vec::new();
        while let Some(Input::Lines(b)) = rx.recv().await {
            lines.extend(b.lines().map(str::to_string));
        }
        assert_eq!(lines, ["ok", "xxxxxxxxxxxxxxxx", "", "<1>abc"]);
        let label = SourceLabel { source: "s".into() };
        assert_eq!(metrics.lines_read.get_or_create(&label).get(), 4);
        assert_eq!(metrics.log_lines_cut.get_or_create(&label).get(), 1);
    }
}
