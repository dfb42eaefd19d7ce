//! `worker serve`: the lease loop. Registers with the coordinator, then each of
//! `slots` threads leases a trial, trains it with [`crate::trial::run`], reports every
//! epoch and finishes it (`Complete`, or `Fail` with the reason), and leases the next.
//! The slots' epoch reports go through one reporter task, which sends whatever is
//! queued as one `ReportEpochs` call (at most [`MAX_REPORT_BATCH`]), each report
//! answered on its own; a coordinator that answers `UNIMPLEMENTED` gets them one
//! `ReportEpoch` call each from then on. A background task heartbeats every held lease; a revoked lease
//! (expired, or its sweep cancelled) is abandoned: its training stops after the current
//! batch ([`trial::run_until`]) and nothing more is reported for it.
//!
//! With `--pack G` ([`ServeOptions::pack`]) each slot leases up to G trials at once
//! (the worker registers `slots × G`), trains those that may share a group
//! ([`packed::can_pack`]) as packed groups ([`packed::train_group_with`]) and the rest
//! alone; every trial is still reported, completed, failed and revoked on its own, and
//! a group's epoch reports travel in one `ReportEpochs` call.
//!
//! Each slot owns its device and CPU thread pool (`threads / slots` threads) and calls
//! the coordinator by blocking on the runtime's handle. Datasets are loaded once per
//! worker and shared by the slots (keyed by dataset string and validation fraction);
//! a dataset whose fingerprint differs from the one the sweep's trials trained on is
//! refused with `Fail`, never trained on.
//!
//! Every call about a trial names the lease and this worker's id ([`LeaseRef`]). A
//! trial that cannot run here is given back with `Fail` and a [`FailKind`]: a dataset
//! whose fingerprint differs is `DATASET_MISMATCH`, a shutdown `HAND_BACK`, anything
//! wrong with the trial itself (its config, its data, splits that cannot train it, more
//! memory than the worker has — [`crate::memory`]) `ERROR`, with the one-line reason.
//!
//! A call that finds the coordinator unreachable, or its storage refusing the write
//! (`UNAVAILABLE`, `storage: …`), is retried with exponential backoff and jitter
//! ([`Backoff`]) for a bounded time; a report or result that still cannot be delivered
//! then gives the trial back (`Fail`, `HAND_BACK`; if that fails too, the lease expires,
//! which costs the trial no attempt). A report the coordinator refuses as
//! `INVALID_ARGUMENT` stops the trial and fails it (`ERROR`) with the coordinator's
//! reason. The lease loop backs off the same way and logs once per change of state
//! (`coordinator unreachable: …, retrying`, `coordinator reachable again`). When
//! `shutdown` resolves, no new trial is leased, every held lease is handed back with
//! `Fail`, and [`serve`] returns; the caller exits the process, which ends any training
//! still running.

use crate::config::TrialConfig;
use crate::data::Dataset;
use crate::device::{self, DeviceError};
use crate::train::Event;
use crate::trial::{self, TrialRecord};
use crate::{memory, packed, wire, with_backend};
use gradsweep_proto::client::AuthChannel as Channel;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::{
    CompleteRequest, FailKind, FailRequest, HeartbeatRequest, LeaseRef, LeaseRequest,
    RegisterRequest, ReportEpochRequest, ReportEpochsRequest, TrialLease,
};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

/// Logs a line through `tracing` (the binary sends it to stderr as text or JSON; a
/// stderr that went away is ignored, never a panic).
macro_rules! log {
    ($($arg:tt)*) => {{
        tracing::info!("{}", format_args!($($arg)*));
    }};
}

/// The most epoch reports one `ReportEpochs` call carries (the coordinator's limit).
pub const MAX_REPORT_BATCH: usize = 4096;

/// Datasets a worker keeps loaded (each slot's trial holds its own as long as it runs).
pub const DATASET_CACHE: usize = 2;

/// How long a call is retried while the coordinator is unreachable.
pub const RETRY_FOR: Duration = Duration::from_secs(120);

/// How calls are retried while the coordinator is unreachable or its storage refuses
/// writes: waits that double from `first` up to `cap`, each drawn between half and
/// all of that (jitter, so that many workers do not call back in step), for at most
/// `give_up_after` per call (the lease loop never gives up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long one call about a trial is retried before the trial is given back.
    pub give_up_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            give_up_after: RETRY_FOR,
        }
    }
}

impl Backoff {
    /// The wait before retry `retry` (0-based), with `jitter` in [0, 1): between half
    /// and all of `first · 2^retry`, at most `cap`.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let full = self
            .first
            .saturating_mul(1u32 << retry.min(20))
            .min(self.cap);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    fn sleep(&self, retry: u32) -> Duration {
        self.delay(retry, rand::random::<f64>())
    }
}

/// Whether the coordinator can be reached and takes the worker's calls, as the lease
/// loop last saw it; [`Link::saw`] returns a line to log only when that changes.
#[derive(Debug, Default)]
pub struct Link {
    state: LinkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    #[default]
    Up,
    Unreachable,
    Refusing,
}

impl Link {
    /// Records the outcome of a call; returns the line to log when the state changed.
    pub fn saw(&mut self, outcome: Result<(), &Status>) -> Option<String> {
        let (state, line) = match outcome {
            Ok(()) => (LinkState::Up, "coordinator reachable again".to_owned()),
            Err(s) if unreachable_now(s) => (
                LinkState::Unreachable,
                format!("coordinator unreachable: {}, retrying", status_line(s)),
            ),
            Err(s) => (
                LinkState::Refusing,
                format!("coordinator refused to lease: {}, retrying", status_line(s)),
            ),
        };
        let changed = state != self.state;
        self.state = state;
        changed.then_some(line)
    }
}

/// A status as one line for a person: its code and message, never tonic's Debug.
pub fn status_line(s: &Status) -> String {
    let message = s.message().replace('\n', " ");
    let message = if message.is_empty() {
        "no message".to_owned()
    } else {
        message
    };
    match s.code() {
        Code::Unavailable if message.starts_with("storage:") => {
            format!("its storage refused the write ({message})")
        }
        code => format!("{} ({message})", code_name(code)),
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Unavailable => "unavailable",
        Code::Unknown => "unknown error",
        Code::Cancelled => "cancelled",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::InvalidArgument => "invalid argument",
        Code::FailedPrecondition => "failed precondition",
        Code::NotFound => "not found",
        Code::Internal => "internal error",
        Code::ResourceExhausted => "resource exhausted",
        Code::Unimplemented => "not implemented",
        _ => "error",
    }
}

/// `worker serve`'s options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The coordinator's URL, `http://host:port`.
    pub coordinator: String,
    /// `auto`, `cpu`, `cuda` or `cuda:N`, for every slot.
    pub device: String,
    /// Trials trained at once.
    pub slots: usize,
    /// The name shown in the coordinator's status.
    pub name: String,
    /// CPU threads in all (shared by the slots); `None`: every core.
    pub threads: Option<usize>,
    /// How calls are retried while the coordinator is unreachable.
    pub backoff: Backoff,
    /// The most host memory one trial may need (`--max-memory`); `None`: what the
    /// machine has available.
    pub max_memory: Option<u64>,
    /// Trials each slot leases at once and trains as packed groups (`--pack`; 1:
    /// one trial at a time).
    pub pack: usize,
}

/// The most trials one slot may pack into a group (`--pack`).
pub const MAX_PACK: usize = 64;

/// The most trials a worker may hold at once (`--slots` × `--pack`): the slots a
/// coordinator lets a worker register.
pub const MAX_HELD: usize = 1024;

/// How `worker serve` reaches the coordinator besides its URL: the CA for an
/// `https://` URL and the worker token. The default: the system's roots, no token.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The CA certificate (PEM) that signed the coordinator's certificate (`--ca`).
    pub ca: Option<PathBuf>,
    /// The worker token (`--token-file` or `GRADSWEEP_TOKEN`).
    pub token: Option<String>,
}

/// Why the lease loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The coordinator's URL is not a URL.
    #[error("--coordinator: \"{url}\" is not a URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The coordinator's URL, CA or TLS cannot work (one line naming the fix).
    #[error("--coordinator {url}: {reason}")]
    Setup {
        /// The URL given.
        url: String,
        /// Why, and what to change.
        reason: String,
    },
    /// The coordinator refused the worker token (or none was sent).
    #[error(
        "coordinator {url} refused this worker's token ({}): pass the worker token \
         (the coordinator's --worker-token-file) with --token-file FILE or GRADSWEEP_TOKEN",
        .status.message()
    )]
    Token {
        /// The coordinator.
        url: String,
        /// What it answered.
        status: Status,
    },
    /// The coordinator refused or failed a call.
    #[error("coordinator {url}: {}", status_line(.status))]
    Rpc {
        /// The coordinator.
        url: String,
        /// What it answered.
        status: Status,
    },
    /// The device is not usable.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A slot could not start.
    #[error("slot {slot}: {reason}")]
    Slot {
        /// The slot.
        slot: usize,
        /// Why.
        reason: String,
    },
    /// `--slots 0`.
    #[error("--slots: must be at least 1")]
    NoSlots,
    /// `--pack` outside 1..=[`MAX_PACK`].
    #[error("--pack: must be 1 to {MAX_PACK}, got {0}")]
    BadPack(usize),
    /// `--slots` × `--pack` more than [`MAX_HELD`].
    #[error(
        "--pack: --slots {slots} × --pack {pack} must be at most {MAX_HELD} trials held at once"
    )]
    TooMany {
        /// `--slots`.
        slots: usize,
        /// `--pack`.
        pack: usize,
    },
}

/// A lease being trained and its abandon flag.
type Active = HashMap<u64, (LeaseRef, Arc<AtomicBool>)>;

struct Shared {
    client: WorkerServiceClient<Channel>,
    /// The id the coordinator gave; replaced when it no longer knows it.
    worker_id: AtomicU64,
    registration: RegisterRequest,
    reregistering: Mutex<()>,
    name: String,
    active: Mutex<Active>,
    stopping: AtomicBool,
    /// Loaded datasets by (dataset, validation fraction), least recently used first.
    data: Mutex<Recent<(String, u64), Arc<Dataset>>>,
    handle: tokio::runtime::Handle,
    backoff: Backoff,
    link: Mutex<Link>,
    /// `--max-memory`.
    max_memory: Option<u64>,
    /// The reporter task's queue (see [`reporter`]): the reports of one slot's epoch
    /// (one trial's, or a packed group's), which travel together.
    reports: tokio::sync::mpsc::UnboundedSender<Vec<Report>>,
    /// `--pack`.
    pack: usize,
}

/// One epoch report on its way to the coordinator, and where its answer goes.
struct Report {
    lease: LeaseRef,
    report: gradsweep_proto::EpochReport,
    abandon: Arc<AtomicBool>,
    started: Instant,
    answer: tokio::sync::oneshot::Sender<Result<(), Status>>,
}

/// The coordinator could not be reached, or could not store the call (`UNAVAILABLE`):
/// worth trying again.
fn unreachable_now(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// At most `capacity` values, the least recently used dropped first.
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    /// Least recently used first.
    entries: Vec<(K, V)>,
}

impl<K: PartialEq, V: Clone> Recent<K, V> {
    /// An empty cache of `capacity` (at least 1) values.
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity: capacity.max(1),
            entries: Vec::new(),
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at);
        let value = entry.1.clone();
        self.entries.push(entry);
        Some(value)
    }

    /// Adds `value`, dropping the least recently used value when full.
    pub fn insert(&mut self, key: K, value: V) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() >= self.capacity {
            self.entries.remove(0);
        }
        self.entries.push((key, value));
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a leased trial ends without `Complete`.
enum Giveback {
    /// The lease is gone (revoked, stale) or the worker is stopping: say nothing.
    Abandoned,
    /// Give it back with `Fail` of this kind and reason.
    Fail(FailKind, String),
}

impl Shared {
    /// Calls the coordinator from a slot thread, retrying while it is unreachable.
    fn call<T, F, Fut>(&self, abandon: Option<&AtomicBool>, mut f: F) -> Result<T, Status>
    where
        F: FnMut(WorkerServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut retry = 0;
        loop {
            match self.handle.block_on(f(self.client.clone())) {
                Ok(r) => return Ok(r.into_inner()),
                Err(s)
                    if unreachable_now(&s)
                        && started.elapsed() < self.backoff.give_up_after
                        && !self.stopping.load(Ordering::SeqCst)
                        && !abandon.is_some_and(|a| a.load(Ordering::SeqCst)) =>
                {
                    let left = self.backoff.give_up_after.saturating_sub(started.elapsed());
                    std::thread::sleep(self.backoff.sleep(retry).min(left));
                    retry += 1;
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// Sends one epoch report through the reporter (batched with the other slots'),
    /// blocking the slot until it is stored or refused; retried like [`Shared::call`].
    fn report(
        &self,
        lease: LeaseRef,
        report: gradsweep_proto::EpochReport,
        abandon: &Arc<AtomicBool>,
    ) -> Result<(), Status> {
        self.report_all(vec![(lease, report, abandon.clone())])
            .pop()
            .expect("one answer per report")
    }

    /// Sends a group's epoch reports through the reporter in one go (so that they
    /// travel in one `ReportEpochs` call), blocking the slot until each is stored or
    /// refused; the answers in the reports' order.
    fn report_all(
        &self,
        reports: Vec<(LeaseRef, gradsweep_proto::EpochReport, Arc<AtomicBool>)>,
    ) -> Vec<Result<(), Status>> {
        let gone = || Status::unavailable("the worker's reporter stopped");
        let mut batch = Vec::with_capacity(reports.len());
        let mut answers = Vec::with_capacity(reports.len());
        for (lease, report, abandon) in reports {
            let (answer, answered) = tokio::sync::oneshot::channel();
            batch.push(Report {
                lease,
                report,
                abandon,
                started: Instant::now(),
                answer,
            });
            answers.push(answered);
        }
        if self.reports.send(batch).is_err() {
            return answers.iter().map(|_| Err(gone())).collect();
        }
        answers
            .into_iter()
            .map(|answered| {
                self.handle
                    .block_on(answered)
                    .unwrap_or_else(|_| Err(gone()))
            })
            .collect()
    }

    /// Logs `line` as this worker.
    fn log(&self, line: &str) {
        log!("worker {}: {line}", self.name);
    }

    /// Gives a trial back with `Fail`; logs when even that cannot be delivered (the
    /// lease then expires, which costs the trial no attempt).
    fn fail(&self, lease: &TrialLease, lease_ref: LeaseRef, kind: FailKind, error: String) {
        let sent = self.call(None, |mut c| {
            let request = FailRequest {
                lease: Some(lease_ref),
                error: error.clone(),
                kind: kind as i32,
            };
            async move { c.fail(request).await }
        });
        if let Err(s) = sent {
            self.log(&format!(
                "giving trial {} of sweep {} back failed: {}; its lease will expire",
                lease.index,
                lease.sweep_id,
                status_line(&s)
            ));
        }
    }

    /// Registers again when the coordinator no longer knows worker `stale_id` (it was
    /// restarted on another database); one slot does it, the others take the new id.
    fn reregister(&self, stale_id: u64) {
        let _one = self.reregistering.lock().expect("re-registration lock");
        if self.worker_id.load(Ordering::SeqCst) != stale_id {
            return;
        }
        match self.call(None, |mut c| {
            let request = self.registration.clone();
            async move { c.register(request).await }
        }) {
            Ok(r) => {
                log!(
                    "worker {}: the coordinator did not know worker {stale_id}; registered again as worker {}",
                    self.name,
                    r.worker_id
                );
                self.worker_id.store(r.worker_id, Ordering::SeqCst);
            }
            Err(s) => {
                log!(
                    "worker {}: registering again failed: {}",
                    self.name,
                    status_line(&s)
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// The dataset of `config`, loaded once per worker; the cache keeps the
    /// [`DATASET_CACHE`] most recently used (a sweep over many datasets or validation
    /// fractions must not hold them all).
    fn dataset(&self, config: &TrialConfig) -> Result<Arc<Dataset>, String> {
        let key = (config.dataset.clone(), config.val_fraction.to_bits());
        let mut cache = self.data.lock().expect("dataset cache lock");
        if let Some(data) = cache.get(&key) {
            return Ok(data);
        }
        let data = Arc::new(trial::load_data(config).map_err(|e| e.to_string())?);
        cache.insert(key, data.clone());
        Ok(data)
    }
}

/// Registers with the coordinator and runs the lease loop until `shutdown` resolves;
/// then hands every held lease back and returns.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with(options, Access::default(), shutdown).await
}

/// [`serve`] over TLS (an `https://` URL, `access.ca`) and with the worker token.
/// A TLS mismatch or a refused token ends it at once with one line naming the fix.
pub async fn serve_with(
    options: ServeOptions,
    access: Access,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    if options.slots == 0 {
        return Err(ServeError::NoSlots);
    }
    if !(1..=MAX_PACK).contains(&options.pack) {
        return Err(ServeError::BadPack(options.pack));
    }
    if options.slots.saturating_mul(options.pack) > MAX_HELD {
        return Err(ServeError::TooMany {
            slots: options.slots,
            pack: options.pack,
        });
    }
    // The coordinator leases a worker at most its registered slots minus the leases it
    // holds: each slot holds up to `pack` leases.
    let capacity = (options.slots * options.pack) as u32;
    let url = options.coordinator.clone();
    let rpc = |status: Status| {
        if matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ) {
            ServeError::Token {
                url: url.clone(),
                status,
            }
        } else if let Some(reason) = gradsweep_proto::client::status_problem(&url, &status) {
            ServeError::Setup {
                url: url.clone(),
                reason,
            }
        } else {
            ServeError::Rpc {
                url: url.clone(),
                status,
            }
        }
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(ServeError::BadUrl {
            url: url.clone(),
            reason: "expected http://HOST:PORT or https://HOST:PORT".into(),
        });
    }
    let channel =
        gradsweep_proto::client::connect_lazy(&url, access.ca.as_deref(), access.token.as_deref())
            .map_err(|reason| ServeError::Setup {
                url: url.clone(),
                reason,
            })?;
    let mut client = WorkerServiceClient::new(channel);
    let started = Instant::now();
    let mut retry = 0;
    let registered = loop {
        let request = RegisterRequest {
            name: options.name.clone(),
            device: options.device.clone(),
            slots: capacity,
        };
        match client.register(request).await {
            Ok(r) => break r.into_inner(),
            Err(s)
                if unreachable_now(&s)
                    && gradsweep_proto::client::status_problem(&url, &s).is_none()
                    && started.elapsed() < options.backoff.give_up_after =>
            {
                tokio::time::sleep(options.backoff.sleep(retry)).await;
                retry += 1;
            }
            Err(s) => return Err(rpc(s)),
        }
    };
    log!(
        "worker {}: registered with {} as worker {}",
        options.name,
        options.coordinator,
        registered.worker_id
    );
    let (reports, queued) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        reports,
        client: client.clone(),
        worker_id: AtomicU64::new(registered.worker_id),
        registration: RegisterRequest {
            name: options.name.clone(),
            device: options.device.clone(),
            slots: capacity,
        },
        reregistering: Mutex::new(()),
        name: options.name.clone(),
        active: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
        data: Mutex::new(Recent::new(DATASET_CACHE)),
        handle: tokio::runtime::Handle::current(),
        backoff: options.backoff,
        link: Mutex::new(Link::default()),
        max_memory: options.max_memory,
        pack: options.pack,
    });

    let total_threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let per_slot = (total_threads / options.slots).max(1);
    let mut slot_threads = Vec::with_capacity(options.slots);
    for slot in 0..options.slots {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let shared = shared.clone();
        let spec = options.device.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gradsweep-slot-{slot}"))
            .spawn(move || slot_loop(&shared, &spec, per_slot, ready_tx))
            .map_err(|e| ServeError::Slot {
                slot,
                reason: e.to_string(),
            })?;
        slot_threads.push(thread);
        match ready_rx.await {
            Ok(Ok(device)) => log!("worker {}: slot {slot} trains on {device}", options.name),
            Ok(Err(reason)) => return Err(ServeError::Slot { slot, reason }),
            Err(_) => {
                return Err(ServeError::Slot {
                    slot,
                    reason: "the slot thread ended before it was ready".into(),
                });
            }
        }
    }

    let heartbeats = tokio::spawn(heartbeat_loop(
        shared.clone(),
        Duration::from_millis(registered.heartbeat_interval_ms.max(10)),
    ));
    let reporting = tokio::spawn(reporter(shared.clone(), queued));
    shutdown.await;
    shared.stopping.store(true, Ordering::SeqCst);
    heartbeats.abort();
    reporting.abort();
    let held: Vec<LeaseRef> = {
        let mut active = shared.active.lock().expect("active leases lock");
        active
            .drain()
            .map(|(_, (lease, abandon))| {
                abandon.store(true, Ordering::SeqCst);
                lease
            })
            .collect()
    };
    for lease in held {
        let request = FailRequest {
            lease: Some(lease),
            error: format!("worker {} shut down: lease given back", options.name),
            kind: FailKind::HandBack as i32,
        };
        if let Err(s) = client.fail(request).await {
            log!(
                "worker {}: handing back trial {} of sweep {} failed: {}",
                options.name,
                lease.index,
                lease.sweep_id,
                status_line(&s)
            );
        }
    }
    // Wait for the slots to leave their trials (an abandoned trial stops after its
    // current batch) before returning: a process that exits while a slot is inside a
    // CUDA call has the driver torn down under it, which crashes it.
    let joined = tokio::task::spawn_blocking(move || {
        for thread in slot_threads {
            let _ = thread.join();
        }
    });
    if tokio::time::timeout(SLOT_EXIT_WAIT, joined).await.is_err() {
        log!(
            "worker {}: a slot did not stop within {}s; exiting anyway",
            options.name,
            SLOT_EXIT_WAIT.as_secs()
        );
    }
    log!("worker {}: stopped", options.name);
    Ok(())
}

/// How long a stopping worker waits for its slots to leave their trials.
const SLOT_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Sends the slots' epoch reports: whatever is queued goes as one `ReportEpochs` call
/// (each report answered on its own), or one `ReportEpoch` call each once the
/// coordinator has answered `UNIMPLEMENTED`. A report the coordinator could not take
/// (unreachable, or its storage refusing: `UNAVAILABLE`) is retried with the next
/// batch after a backoff, for at most `give_up_after` from when its slot sent it, and
/// not once its lease is abandoned or the worker stops; then its slot gets the last
/// refusal. The queue holds at most one message per slot (each slot waits for its
/// answers): one trial's report, or a packed group's, which go in the same call.
async fn reporter(
    shared: Arc<Shared>,
    mut queued: tokio::sync::mpsc::UnboundedReceiver<Vec<Report>>,
) {
    let mut client = shared.client.clone();
    let mut batched = true;
    let mut retry = 0u32;
    let mut waiting: Vec<Report> = Vec::new();
    loop {
        if waiting.is_empty() {
            match queued.recv().await {
                Some(r) => waiting.extend(r),
                None => return,
            }
        }
        while waiting.len() < MAX_REPORT_BATCH {
            match queued.try_recv() {
                Ok(r) => waiting.extend(r),
                Err(_) => break,
            }
        }
        // A group's reports may take the batch past the coordinator's limit: the rest
        // go in the next call.
        let rest = if waiting.len() > MAX_REPORT_BATCH {
            waiting.split_off(MAX_REPORT_BATCH)
        } else {
            Vec::new()
        };
        let outcomes: Vec<Result<(), Status>> = if batched {
            let request = ReportEpochsRequest {
                reports: waiting
                    .iter()
                    .map(|r| ReportEpochRequest {
                        lease: Some(r.lease),
                        report: Some(r.report.clone()),
                    })
                    .collect(),
            };
            match client.report_epochs(request).await {
                Ok(answer) => {
                    let outcomes = answer.into_inner().outcomes;
                    if outcomes.len() == waiting.len() {
                        outcomes
                            .into_iter()
                            .map(|o| match o.code {
                                0 => Ok(()),
                                code => Err(Status::new(Code::from(code as i32), o.message)),
                            })
                            .collect()
                    } else {
                        let s = Status::internal(format!(
                            "ReportEpochs answered {} outcomes for {} reports",
                            outcomes.len(),
                            waiting.len()
                        ));
                        waiting.iter().map(|_| Err(s.clone())).collect()
                    }
                }
                Err(s) if s.code() == Code::Unimplemented => {
                    shared.log("the coordinator has no ReportEpochs: reporting epochs one by one");
                    batched = false;
                    waiting.extend(rest);
                    continue;
                }
                Err(s) => waiting.iter().map(|_| Err(s.clone())).collect(),
            }
        } else {
            let mut outcomes = Vec::with_capacity(waiting.len());
            for r in &waiting {
                let request = ReportEpochRequest {
                    lease: Some(r.lease),
                    report: Some(r.report.clone()),
                };
                outcomes.push(client.report_epoch(request).await.map(|_| ()));
            }
            outcomes
        };
        let mut again = Vec::new();
        for (r, outcome) in waiting.drain(..).zip(outcomes) {
            match outcome {
                Err(s)
                    if unreachable_now(&s)
                        && r.started.elapsed() < shared.backoff.give_up_after
                        && !shared.stopping.load(Ordering::SeqCst)
                        && !r.abandon.load(Ordering::SeqCst) =>
                {
                    again.push(r)
                }
                outcome => {
                    let _ = r.answer.send(outcome);
                }
            }
        }
        waiting = again;
        let retrying = !waiting.is_empty();
        waiting.extend(rest);
        if !retrying {
            retry = 0;
        } else {
            let left = waiting
                .iter()
                .map(|r| {
                    shared
                        .backoff
                        .give_up_after
                        .saturating_sub(r.started.elapsed())
                })
                .min()
                .unwrap_or_default();
            tokio::time::sleep(shared.backoff.sleep(retry).min(left)).await;
            retry = retry.saturating_add(1);
        }
    }
}

/// Renews the held leases every `interval`; flags the revoked ones to be abandoned.
async fn heartbeat_loop(shared: Arc<Shared>, interval: Duration) {
    let mut client = shared.client.clone();
    loop {
        tokio::time::sleep(interval).await;
        let leases: Vec<LeaseRef> = {
            let active = shared.active.lock().expect("active leases lock");
            active.values().map(|(lease, _)| *lease).collect()
        };
        let request = HeartbeatRequest {
            worker_id: shared.worker_id.load(Ordering::SeqCst),
            leases,
        };
        let Ok(answer) = client.heartbeat(request).await else {
            continue;
        };
        let active = shared.active.lock().expect("active leases lock");
        for revoked in answer.into_inner().revoked {
            let Some(lease) = revoked.lease else { continue };
            if let Some((_, abandon)) = active.get(&lease.lease_id) {
                abandon.store(true, Ordering::SeqCst);
                log!(
                    "worker {}: trial {} of sweep {} abandoned: lease revoked ({})",
                    shared.name,
                    lease.index,
                    lease.sweep_id,
                    revoked.reason().as_str_name()
                );
            }
        }
    }
}

/// One slot: its device and thread pool, leasing and training until the worker stops.
/// With `--pack G` it leases up to G trials at once and trains them as packed groups
/// ([`run_leases`]).
fn slot_loop(
    shared: &Shared,
    spec: &str,
    threads: usize,
    ready: tokio::sync::oneshot::Sender<Result<String, String>>,
) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("gradsweep-cpu-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the thread pool: {e}")));
            return;
        }
    };
    let device = match device::resolve(spec, threads) {
        Ok((device, note)) => {
            if let Some(note) = note {
                log!("worker {}: note: {note}", shared.name);
            }
            device
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(device.name()));
    let mut retry = 0;
    while !shared.stopping.load(Ordering::SeqCst) {
        let worker_id = shared.worker_id.load(Ordering::SeqCst);
        let answer = shared.handle.block_on(async {
            shared
                .client
                .clone()
                .lease(LeaseRequest {
                    worker_id,
                    max_trials: shared.pack as u32,
                })
                .await
        });
        let seen = match &answer {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(s),
        };
        if let Some(line) = shared.link.lock().expect("link state lock").saw(seen) {
            shared.log(&line);
        }
        match answer {
            Ok(answer) => {
                retry = 0;
                let answer = answer.into_inner();
                if answer.leases.is_empty() {
                    std::thread::sleep(Duration::from_millis(
                        answer.retry_after_ms.clamp(10, 1000),
                    ));
                } else {
                    run_leases(shared, &device, &pool, answer.leases);
                }
            }
            Err(s) if s.code() == Code::NotFound => shared.reregister(worker_id),
            Err(_) => {
                std::thread::sleep(shared.backoff.sleep(retry));
                retry = retry.saturating_add(1);
            }
        }
    }
}

/// A lease a slot holds: heartbeated from when it is leased until it is finished.
struct Held {
    lease: TrialLease,
    lease_ref: LeaseRef,
    abandon: Arc<AtomicBool>,
    label: String,
    started: Instant,
}

impl Shared {
    /// Registers `lease` with the heartbeats.
    fn hold(&self, lease: TrialLease) -> Held {
        let lease_ref = LeaseRef {
            sweep_id: lease.sweep_id,
            index: lease.index,
            lease_id: lease.lease_id,
            worker_id: self.worker_id.load(Ordering::SeqCst),
        };
        let abandon = Arc::new(AtomicBool::new(false));
        self.active
            .lock()
            .expect("active leases lock")
            .insert(lease.lease_id, (lease_ref, abandon.clone()));
        let label = TrialConfig::from_toml_str(&lease.config_toml)
            .map(|c| config_label(&c))
            .unwrap_or_else(|_| "config refused".to_owned());
        Held {
            lease,
            lease_ref,
            abandon,
            label,
            started: Instant::now(),
        }
    }
}

impl Held {
    /// Logs that the trial starts (`group`: how many trials train together).
    fn begin(&mut self, group: usize) {
        self.started = Instant::now();
        let lease = &self.lease;
        let label = &self.label;
        let packed = if group > 1 {
            format!(", packed with {} more", group - 1)
        } else {
            String::new()
        };
        tracing::info!(
            sweep = lease.sweep_id,
            index = lease.index,
            attempt = lease.attempt,
            config = %label,
            group,
            "trial {}/{} started ({label}{packed})",
            lease.sweep_id,
            lease.index
        );
    }
}

/// Trains a slot's leases: split into groups of trials that may train together
/// ([`packed::can_pack`], at most `--pack`), each group trained packed
/// ([`run_group`]), a trial that joins no group alone ([`run_lease`]). Every lease is
/// heartbeated from the start, so the trials waiting for an earlier group keep theirs.
fn run_leases(
    shared: &Shared,
    device: &device::Device,
    pool: &rayon::ThreadPool,
    leases: Vec<TrialLease>,
) {
    let held: Vec<Held> = leases.into_iter().map(|l| shared.hold(l)).collect();
    let mut groups: Vec<(Option<TrialConfig>, Vec<Held>)> = Vec::new();
    for h in held {
        match TrialConfig::from_toml_str(&h.lease.config_toml) {
            Ok(config) => {
                let joins = groups.iter_mut().find(|(first, members)| {
                    members.len() < shared.pack
                        && first
                            .as_ref()
                            .is_some_and(|first| packed::can_pack(first, &config).is_ok())
                });
                match joins {
                    Some((_, members)) => members.push(h),
                    None => groups.push((Some(config), vec![h])),
                }
            }
            // Trained alone, which fails it with the config's error.
            Err(_) => groups.push((None, vec![h])),
        }
    }
    for (_, mut members) in groups {
        if shared.stopping.load(Ordering::SeqCst) {
            // serve() has handed every held lease back.
            return;
        }
        if members.len() == 1 {
            run_lease(shared, device, pool, members.pop().expect("one member"));
        } else {
            run_group(shared, device, pool, members);
        }
    }
}

/// Trains one leased trial alone and finishes it.
fn run_lease(shared: &Shared, device: &device::Device, pool: &rayon::ThreadPool, mut held: Held) {
    held.begin(1);
    let trained = train_lease(shared, device, pool, &held);
    finish(shared, held, trained);
}

/// A group member's `on_event`, sendable to the slot's thread pool.
type OnEvent<'a> = Box<dyn FnMut(Event<'_>) + Send + 'a>;

/// A group member's `stop`, shareable with the slot's thread pool.
type Stop<'a> = Box<dyn Fn() -> bool + Sync + 'a>;

/// Trains a group of compatible trials packed ([`packed::train_group_with`]) and
/// finishes each on its own. A member that cannot train (its data, splits, a revoked
/// lease) is answered before the group starts; a group whose memory estimate does not
/// fit trains its members alone. Each epoch's reports of the group go to the reporter
/// together (one `ReportEpochs` call); a refused report stops only its trial.
fn run_group(
    shared: &Shared,
    device: &device::Device,
    pool: &rayon::ThreadPool,
    members: Vec<Held>,
) {
    let mut ready: Vec<(Held, TrialConfig)> = Vec::with_capacity(members.len());
    let mut data: Option<Arc<Dataset>> = None;
    for mut h in members {
        if h.abandon.load(Ordering::SeqCst) {
            h.begin(1);
            finish(shared, h, Err(Giveback::Abandoned));
            continue;
        }
        match prepare(shared, &h.lease) {
            Ok((config, d)) => {
                data = Some(d);
                ready.push((h, config));
            }
            Err(giveback) => {
                h.begin(1);
                finish(shared, h, Err(giveback));
            }
        }
    }
    let Some(data) = data else { return };
    if ready.len() < 2 {
        for (mut h, config) in ready {
            h.begin(1);
            let trained = check_and_train(shared, device, pool, &h, &config, &data);
            finish(shared, h, trained);
        }
        return;
    }
    let configs: Vec<&TrialConfig> = ready.iter().map(|(_, c)| c).collect();
    if let Err(e) = memory::check_group(&configs, &data, device, shared.max_memory) {
        shared.log(&format!(
            "a packed group of {} trials does not fit ({e}); training them one by one",
            ready.len()
        ));
        for (mut h, config) in ready {
            h.begin(1);
            let trained = check_and_train(shared, device, pool, &h, &config, &data);
            finish(shared, h, trained);
        }
        return;
    }
    let n = ready.len();
    for (h, _) in ready.iter_mut() {
        h.begin(n);
    }
    // The epoch reports given to the members' on_event, sent together after the epoch.
    let pending: Mutex<Vec<(usize, u32, gradsweep_proto::EpochReport)>> = Mutex::new(Vec::new());
    // Why reporting stopped a member, when it did.
    let refused: Mutex<Vec<Option<Giveback>>> = Mutex::new((0..n).map(|_| None).collect());
    let mut handlers: Vec<OnEvent<'_>> = ready
        .iter()
        .enumerate()
        .map(|(g, (h, _))| {
            let abandon = h.abandon.clone();
            let pending = &pending;
            Box::new(move |event: Event<'_>| {
                let Event::Epoch(report) = event else { return };
                if abandon.load(Ordering::SeqCst) {
                    return;
                }
                pending.lock().expect("pending reports lock").push((
                    g,
                    report.epoch,
                    wire::epoch(report),
                ));
            }) as OnEvent<'_>
        })
        .collect();
    let stops: Vec<Stop<'_>> = ready
        .iter()
        .map(|(h, _)| {
            let abandon = h.abandon.clone();
            Box::new(move || {
                abandon.load(Ordering::SeqCst) || shared.stopping.load(Ordering::SeqCst)
            }) as Stop<'_>
        })
        .collect();
    let mut after_epoch = |_epoch: u32| {
        let batch: Vec<_> = std::mem::take(&mut *pending.lock().expect("pending reports lock"));
        if batch.is_empty() {
            return;
        }
        let mut epochs = Vec::with_capacity(batch.len());
        let mut reports = Vec::with_capacity(batch.len());
        for (g, epoch, report) in batch {
            let h = &ready[g].0;
            epochs.push((g, epoch));
            reports.push((h.lease_ref, report, h.abandon.clone()));
        }
        let answers = shared.report_all(reports);
        for ((g, epoch), sent) in epochs.into_iter().zip(answers) {
            let Err(s) = sent else { continue };
            let h = &ready[g].0;
            if h.abandon.load(Ordering::SeqCst) {
                continue;
            }
            refused.lock().expect("refusals lock")[g] = Some(refusal(shared, &h.lease, epoch, &s));
            h.abandon.store(true, Ordering::SeqCst);
        }
    };
    let trained = pool.install(|| {
        let mut members: Vec<packed::Member<'_>> = ready
            .iter()
            .zip(handlers.iter_mut())
            .zip(&stops)
            .map(|(((_, config), on_event), stop)| packed::Member {
                config,
                on_event: &mut **on_event,
                stop: &**stop,
            })
            .collect();
        with_backend!(device, |b| packed::train_group_with(
            b,
            &data,
            &mut members,
            &mut after_epoch
        ))
    });
    drop(handlers);
    let refused = refused.into_inner().expect("refusals lock");
    match trained {
        Ok(answers) => {
            for (((h, _), answer), refused) in ready.into_iter().zip(answers).zip(refused) {
                let result = match (refused, answer) {
                    (Some(giveback), _) => Err(giveback),
                    (None, Ok(record)) => Ok(record),
                    (None, Err(trial::TrialError::Stopped)) => Err(Giveback::Abandoned),
                    (None, Err(e)) => Err(Giveback::Fail(FailKind::Error, e.to_string())),
                };
                finish(shared, h, result);
            }
        }
        Err(e) => {
            for ((h, _), refused) in ready.into_iter().zip(refused) {
                let result = refused.unwrap_or_else(|| {
                    Giveback::Fail(FailKind::Error, format!("its packed group: {e}"))
                });
                finish(shared, h, Err(result));
            }
        }
    }
}

/// Finishes a trained (or refused) trial: `Complete`, or `Fail` with its kind, unless
/// the lease was revoked or the worker is stopping; its heartbeats end.
fn finish(shared: &Shared, held: Held, trained: Result<TrialRecord, Giveback>) {
    let Held {
        lease,
        lease_ref,
        abandon,
        label,
        started,
    } = held;
    let ended = |outcome: &str| {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            sweep = lease.sweep_id,
            index = lease.index,
            config = %label,
            outcome,
            seconds,
            "trial {}/{} ended: {outcome} after {seconds:.1}s ({label})",
            lease.sweep_id,
            lease.index
        );
    };
    shared
        .active
        .lock()
        .expect("active leases lock")
        .remove(&lease.lease_id);
    if shared.stopping.load(Ordering::SeqCst) {
        ended("handed back (worker stopping)");
        return;
    }
    let (kind, error) = match trained {
        Ok(record) => {
            if abandon.load(Ordering::SeqCst) {
                ended("abandoned (lease revoked)");
                return;
            }
            ended(&match record.outcome {
                crate::report::Outcome::Completed => "completed".to_owned(),
                crate::report::Outcome::Diverged { epoch } => format!("diverged in epoch {epoch}"),
            });
            let result = wire::result(&record, &shared.name);
            let done = shared.call(None, |mut c| {
                let request = CompleteRequest {
                    lease: Some(lease_ref),
                    result: Some(result.clone()),
                };
                async move { c.complete(request).await }
            });
            match done {
                Ok(_) => return,
                Err(s) => match s.code() {
                    Code::InvalidArgument => (
                        FailKind::Error,
                        format!(
                            "the coordinator refused the trial's result: {}",
                            s.message()
                        ),
                    ),
                    code if unreachable_now(&s) || code == Code::Internal => (
                        FailKind::HandBack,
                        format!(
                            "the trial's result could not be delivered within {}s: {}; given back",
                            shared.backoff.give_up_after.as_secs(),
                            status_line(&s)
                        ),
                    ),
                    _ => {
                        shared.log(&format!(
                            "finishing trial {} of sweep {} was refused: {}",
                            lease.index,
                            lease.sweep_id,
                            status_line(&s)
                        ));
                        return;
                    }
                },
            }
        }
        Err(Giveback::Abandoned) => {
            ended("abandoned (lease revoked)");
            return;
        }
        Err(Giveback::Fail(kind, error)) => {
            ended(match kind {
                FailKind::DatasetMismatch => "refused (dataset mismatch)",
                FailKind::HandBack => "given back",
                _ => "failed",
            });
            (kind, error)
        }
    };
    shared.log(&format!(
        "trial {} of sweep {} {}: {error}",
        lease.index,
        lease.sweep_id,
        match kind {
            FailKind::DatasetMismatch => "refused",
            FailKind::HandBack => "given back",
            _ => "failed",
        }
    ));
    shared.fail(&lease, lease_ref, kind, error);
}

/// A trial's config in a few words for the log: its name and the usual ablation axes,
/// e.g. `deep-sigmoid activation=sigmoid init=xavier batchnorm=true seed=2`.
fn config_label(config: &TrialConfig) -> String {
    let mut label = config.name.clone();
    for key in [
        "activation",
        "init",
        "batchnorm",
        "regularization",
        "hidden",
        "seed",
    ] {
        if let Some(text) = config.field_text(key) {
            label.push_str(&format!(" {key}={text}"));
        }
    }
    label
}

/// Parses a leased trial's config, loads its data (cached) and checks the data's
/// fingerprint and the trial's splits. `Err` says how the trial ends instead.
fn prepare(shared: &Shared, lease: &TrialLease) -> Result<(TrialConfig, Arc<Dataset>), Giveback> {
    let error = |e: String| Giveback::Fail(FailKind::Error, e);
    let config = TrialConfig::from_toml_str(&lease.config_toml)
        .map_err(|e| error(format!("the trial's config is refused: {e}")))?;
    let data = shared.dataset(&config).map_err(error)?;
    if !lease.dataset_fingerprint.is_empty() && lease.dataset_fingerprint != data.fingerprint {
        return Err(Giveback::Fail(
            FailKind::DatasetMismatch,
            format!(
                "dataset {} here has fingerprint {}, but the sweep's trials trained on {}; refusing to train on other data",
                config.dataset, data.fingerprint, lease.dataset_fingerprint
            ),
        ));
    }
    // Before any buffer is allocated: splits that cannot train the trial.
    trial::check_splits(&config, &data).map_err(|e| error(e.to_string()))?;
    Ok((config, data))
}

/// How a refused epoch report ends its trial.
fn refusal(shared: &Shared, lease: &TrialLease, epoch: u32, s: &Status) -> Giveback {
    match s.code() {
        // A worker bug: the trial stops and fails with the coordinator's reason.
        Code::InvalidArgument => Giveback::Fail(
            FailKind::Error,
            format!(
                "the coordinator refused epoch {epoch}'s report: {}",
                s.message()
            ),
        ),
        // The lease is no longer ours (expired and re-leased, cancelled) or the
        // coordinator forgot this worker: nothing more to say about it.
        Code::FailedPrecondition | Code::NotFound => {
            shared.log(&format!(
                "trial {} of sweep {} abandoned: {}",
                lease.index,
                lease.sweep_id,
                status_line(s)
            ));
            Giveback::Abandoned
        }
        // Unreachable, or its storage refused the write, for longer than the
        // backoff allows.
        _ => Giveback::Fail(
            FailKind::HandBack,
            format!(
                "epoch {epoch}'s report could not be delivered within {}s: {}; given back",
                shared.backoff.give_up_after.as_secs(),
                status_line(s)
            ),
        ),
    }
}

/// Parses, loads, checks and trains one trial alone; reports each epoch as it ends.
/// `Err` says how the trial ends instead of `Complete`.
fn train_lease(
    shared: &Shared,
    device: &device::Device,
    pool: &rayon::ThreadPool,
    held: &Held,
) -> Result<TrialRecord, Giveback> {
    let (config, data) = prepare(shared, &held.lease)?;
    check_and_train(shared, device, pool, held, &config, &data)
}

/// Checks a prepared trial's memory estimate, then trains it alone
/// ([`trial::run_until`]), reporting each epoch as it ends.
fn check_and_train(
    shared: &Shared,
    device: &device::Device,
    pool: &rayon::ThreadPool,
    held: &Held,
    config: &TrialConfig,
    data: &Dataset,
) -> Result<TrialRecord, Giveback> {
    let error = |e: String| Giveback::Fail(FailKind::Error, e);
    let (lease, lease_ref, abandon) = (&held.lease, held.lease_ref, &held.abandon);
    // Before any buffer is allocated: more memory than this worker has.
    memory::check_trial(config, data, device, shared.max_memory)
        .map_err(|e| error(e.to_string()))?;
    // Why reporting stopped the trial, when it did.
    let mut refused: Option<Giveback> = None;
    let mut on_event = |event: Event<'_>| {
        let Event::Epoch(report) = event else { return };
        if abandon.load(Ordering::SeqCst) {
            return;
        }
        let epoch = report.epoch;
        let report = wire::epoch(report);
        let sent = shared.report(lease_ref, report, abandon);
        let Err(s) = sent else { return };
        if abandon.load(Ordering::SeqCst) {
            return;
        }
        refused = Some(refusal(shared, lease, epoch, &s));
        abandon.store(true, Ordering::SeqCst);
    };
    let stop = || abandon.load(Ordering::SeqCst) || shared.stopping.load(Ordering::SeqCst);
    let trained = pool.install(|| {
        with_backend!(device, |b| trial::run_until(
            b,
            config,
            data,
            &mut on_event,
            &stop
        ))
    });
    if let Some(giveback) = refused {
        return Err(giveback);
    }
    match trained {
        Ok(record) => Ok(record),
        Err(trial::TrialError::Stopped) => Err(Giveback::Abandoned),
        Err(e) => Err(error(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_cache_keeps_the_most_recently_used() {
        let mut cache = Recent::new(2);
        for v in 0..100 {
            cache.insert(v, v * 10);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&98), Some(980));
        cache.insert(100, 1000);
        // 99 was the least recently used.
        assert_eq!(cache.get(&99), None);
        assert_eq!(cache.get(&98), Some(980));
        assert_eq!(cache.get(&100), Some(1000));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let b = Backoff {
            first: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            give_up_after: RETRY_FOR,
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(1600));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(1200));
        // Capped, still jittered, and no overflow however long it goes on.
        assert_eq!(b.delay(10, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn the_link_logs_once_per_change_of_state() {
        let mut link = Link::default();
        let down = Status::unavailable("tcp connect error: Connection refused");
        let full = Status::unavailable("storage: No space left on device");
        assert_eq!(link.saw(Ok(())), None);
        assert_eq!(
            link.saw(Err(&down)).as_deref(),
            Some(
                "coordinator unreachable: unavailable (tcp connect error: Connection refused), retrying"
            )
        );
        // Every further failure, whatever its message, is the same state: no line.
        assert_eq!(link.saw(Err(&down)), None);
        assert_eq!(link.saw(Err(&full)), None);
        assert_eq!(
            link.saw(Ok(())).as_deref(),
            Some("coordinator reachable again")
        );
        assert_eq!(link.saw(Ok(())), None);
        let refused = Status::failed_precondition("worker 3 holds 2 leases");
        assert_eq!(
            link.saw(Err(&refused)).as_deref(),
            Some(
                "coordinator refused to lease: failed precondition (worker 3 holds 2 leases), retrying"
            )
        );
    }

    #[test]
    fn a_refused_registration_is_one_line_without_debug_text() {
        let e = ServeError::Rpc {
            url: "http://127.0.0.1:7070".into(),
            status: Status::invalid_argument("name: at most 256 bytes, got 1048576"),
        };
        assert_eq!(
            e.to_string(),
            "coordinator http://127.0.0.1:7070: invalid argument (name: at most 256 bytes, got 1048576)"
        );
    }

    #[test]
    fn a_storage_refusal_reads_as_one() {
        let s = Status::unavailable("storage: No space left on device (os error 28)");
        assert_eq!(
            status_line(&s),
            "its storage refused the write (storage: No space left on device (os error 28))"
        );
        let s = Status::internal("line one\nline two");
        assert_eq!(status_line(&s), "internal error (line one line two)");
    }
}
