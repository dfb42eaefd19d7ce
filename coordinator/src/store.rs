//! The coordinator's database (sled): sweeps, trials, epoch reports, workers, and the
//! trial state machine.
//!
//! # Trees
//!
//! - `sweeps`: sweep id (u64 BE) → [`Sweep`]
//! - `trials`: sweep id (u64 BE) ‖ index (u32 BE) → [`Trial`]
//! - `epochs`: sweep id ‖ index ‖ attempt (u32 BE) ‖ epoch (u32 BE) → [`EpochReport`]
//! - `summaries`: same key as `trials` → [`Summary`], the trial's compact record
//!   (state, axis values, seed, and once finished its final and best-validation epochs
//!   and verdict flags): what tables, effects and lists read
//! - `counts`: sweep id (u64 BE) → [`TrialCounts`], the sweep's trials per state
//! - `workers`: worker id (u64 BE) → [`Worker`]
//! - `meta`: `schema_version` → u32 BE; `last_sweep_id` → u64 BE; `derived_version` →
//!   u32 BE (the `summaries` and `counts` trees are complete)
//!
//! Values are prost-encoded; fields added later (a trial's `failures`, `lost` and
//! `history`) read as zero/empty from older records. Sweep ids are 1, 2, 3, … per
//! database, ids a person can type: `last_sweep_id` is read and advanced in the
//! transaction that stores the sweep, and a database from before it continues after
//! its largest sweep id. Worker ids come from sled's `generate_id`; neither kind ever
//! repeats across restarts. Lease ids are random
//! non-zero 64-bit numbers from the operating system's RNG: a lease is a secret shared
//! by the coordinator and the worker holding it, never sent to a client.
//!
//! # Trial states
//!
//! `PENDING → LEASED(worker, lease_id, deadline, attempt) → SUCCEEDED | DIVERGED |
//! FAILED | CANCELLED`. A lease that ends without finishing the trial (the worker's
//! error, an expired lease, a hand-back, a dataset mismatch) is recorded in the trial's
//! `history` and requeues it as a new attempt; an error counts in `failures` (`FAILED`
//! at [`LeasePolicy::max_attempts`]), the others in `lost` (`FAILED` at
//! [`LeasePolicy::max_lost`]). [`Store::retry`] requeues FAILED (and DIVERGED) trials
//! with both counts reset. Every transition of a trial is one sled transaction; what
//! moves a whole sweep (submit, cancel, retry) writes its trials in transactions of
//! [`WRITE_CHUNK`] (see there for why), ordered so that a crash midway is finished or
//! undone when the database is next opened: a submit's trials are invisible until its
//! sweep record is written (and removed on open if it never was); a cancel writes its
//! sweep record first (from then on `lease` skips the sweep's trials) and open cancels a
//! cancelled sweep's open trials. A call naming a lease that is not the trial's current
//! one is refused with [`Error::StaleLease`], a call from another worker than the
//! lease's with [`Error::NotLeaseHolder`], a report that breaks the protocol with
//! [`Error::BadRequest`]; none of them changes anything.
//! `complete` is idempotent. The epochs of a trial are stored per attempt; only the
//! current (or finishing) attempt's are read back ([`Store::epochs`]).
//!
//! Every transaction that changes a trial's state also rewrites its [`Summary`] and
//! its sweep's counts, so a sweep's counts and state are one read, and a table one
//! small record per trial. A database from before those trees (no `derived_version`)
//! gets them computed from its trials and epochs when it is opened; on every open the
//! counts are checked against the summaries' states (and rewritten if they differ).
//!
//! The store keeps, beside sled, an in-memory index of the pending trials (in lease
//! order: oldest sweep first, then index) and of the leases' deadlines, rebuilt by
//! [`Store::open`], which also gives every lease a fresh deadline (so a coordinator
//! that was down longer than the TTL costs no attempt). A held lease's entry also
//! keeps what checking an epoch report needs (lease id, attempt, epochs stored, the
//! trial's epochs and layers), so a report reads nothing but its own key. All writes go
//! through one mutex (a submit writes its still invisible trials before it takes it,
//! under a lock of its own): the coordinator is the only writer. Durability is the caller's:
//! call [`Store::flush`] before acknowledging what must survive a crash; concurrent
//! callers share flushes (a group commit: a flush acknowledges every write made before
//! it started).
//!
//! # Memory
//!
//! Besides sled's page cache (bounded by [`StoreOptions::cache_bytes`]), the process
//! holds per pending trial one entry of the pending set (its id, ~40 bytes), per held
//! lease one entry (~64 bytes; bounded by the workers' slots), per sweep its
//! cancelled flag and fingerprint, per registered worker its slots. Nothing is held
//! per epoch or per finished trial.
//!
//! # Storage faults
//!
//! sled 0.34 cannot write again after a failed write (a full disk): it keeps the error
//! until the database is reopened, and a later flush waits forever while holding sled's
//! internal lock, which then blocks every other call. So the first storage error is
//! logged as one line, answered to its call as [`Error::Storage`], and *poisons* the
//! store: every later write is refused at once with [`Error::StorageFailed`] (never
//! handed to sled), and [`Store::failed`] resolves, on which the server stops and the
//! coordinator exits non-zero for its supervisor to restart it on the intact database.

use crate::Error;
use crate::summary::{Picks, Summary};
use gradsweep_proto::{
    AttemptEnd, AttemptEndKind, EpochReport, FailKind, LeaseRef, RevokeReason, RevokedLease, Sweep,
    SweepState, Trial, TrialCounts, TrialLease, TrialResult, TrialState, Worker, outcome,
};
use gradsweep_spec::sweep::Axis;
use gradsweep_spec::{SweepTrial, TrialConfig};
use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The database layout this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The version of the trees derived from the trials (`summaries`, `counts`); a
/// database without it (or with an older one) gets them rebuilt on open.
pub const DERIVED_VERSION: u32 = 1;

/// The `meta` key of [`DERIVED_VERSION`].
const DERIVED: &str = "derived_version";

/// The most trials one transaction or batch writes: sled 0.34 keeps much of a large
/// transaction in memory after it commits (one 100,000-trial transaction: about
/// 1.6 GB), so submits, cancels, retries and rebuilds write in chunks of this many.
pub const WRITE_CHUNK: usize = 1024;

/// The most reports one `ReportEpochs` call may carry.
pub const MAX_REPORTS_PER_CALL: usize = 4096;

/// sled's page cache by default, in MiB (`coordinator --cache-mb`).
pub const DEFAULT_CACHE_MB: u64 = 32;

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache capacity, in bytes.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: DEFAULT_CACHE_MB << 20,
        }
    }
}

/// The longest worker name or device accepted by `Register`, in bytes.
pub const MAX_WORKER_TEXT: usize = 256;

/// The most slots a worker may register.
pub const MAX_SLOTS: u32 = 1024;

/// The longest error a `Fail` may store, in bytes (longer ones are cut).
pub const MAX_ERROR_TEXT: usize = 4096;

/// A flush that has not returned after this long is taken as a storage failure.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A trial's address: sweep id and index.
pub type TrialId = (u64, u32);

/// How leases behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// A lease lapses this long after it was granted or last renewed.
    pub ttl_ms: u64,
    /// Attempts ending in the trial's own error before it is `FAILED`.
    pub max_attempts: u32,
    /// Attempts lost to the infrastructure (expired leases, hand-backs, dataset
    /// mismatches) before it is `FAILED`.
    pub max_lost: u32,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            ttl_ms: 30_000,
            max_attempts: 3,
            max_lost: 20,
        }
    }
}

/// A sweep to store: what [`gradsweep_spec`] parsed and expanded.
pub struct NewSweep<'a> {
    /// The sweep's name.
    pub name: &'a str,
    /// The spec text as submitted.
    pub spec_toml: &'a str,
    /// The grid's axes.
    pub axes: &'a [Axis],
    /// The seeds.
    pub seeds: &'a [u64],
    /// The expanded trials.
    pub trials: &'a [SweepTrial],
}

/// What a heartbeat found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeartbeatOutcome {
    /// Leases renewed.
    pub renewed: Vec<LeaseRef>,
    /// Leases the worker must abandon.
    pub revoked: Vec<RevokedLease>,
}

/// A held lease in the index, with what checking its epoch reports needs.
#[derive(Debug, Clone, Copy)]
struct Held {
    deadline: u64,
    worker: u64,
    lease_id: u64,
    attempt: u32,
    /// Epochs stored for this attempt.
    stored: u32,
    /// The trial's epochs.
    epochs: u32,
    /// The trial's Linear layers.
    layers: u32,
}

/// The in-memory index over the trials tree.
#[derive(Default)]
struct Index {
    /// Pending trials, in lease order.
    pending: BTreeSet<TrialId>,
    /// Leased trials, their deadlines and workers.
    leased: HashMap<TrialId, Held>,
    /// Leases held per worker.
    held: HashMap<u64, u32>,
    /// Per sweep: cancelled, and the fingerprint of the data its trials trained on.
    sweeps: HashMap<u64, SweepInfo>,
    /// Registered workers' slots.
    workers: HashMap<u64, u32>,
}

impl Index {
    fn hold(&mut self, id: TrialId, held: Held) {
        if let Some(old) = self.leased.insert(id, held) {
            self.release_count(old.worker);
        }
        *self.held.entry(held.worker).or_default() += 1;
    }

    fn release(&mut self, id: &TrialId) {
        if let Some(old) = self.leased.remove(id) {
            self.release_count(old.worker);
        }
    }

    fn release_count(&mut self, worker: u64) {
        if let Some(n) = self.held.get_mut(&worker) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(&worker);
            }
        }
    }
}

#[derive(Default, Clone)]
struct SweepInfo {
    cancelled: bool,
    fingerprint: String,
}

/// Flushes shared by concurrent writers (see [`Store::flush`]).
#[derive(Default)]
struct GroupState {
    /// The last flush generation started.
    started: u64,
    /// The highest generation a waiter needs.
    wanted: u64,
    /// Whether a flusher is running.
    running: bool,
    /// A failed flush's cause: every waiter of it (and later) is refused with it.
    failed: Option<String>,
}

struct Group {
    state: Mutex<GroupState>,
    /// The last flush generation finished.
    done: watch::Sender<u64>,
}

/// The coordinator's database.
pub struct Store {
    db: sled::Db,
    sweeps: sled::Tree,
    trials: sled::Tree,
    summaries: sled::Tree,
    counts: sled::Tree,
    epochs: sled::Tree,
    workers: sled::Tree,
    meta: sled::Tree,
    policy: LeasePolicy,
    index: Mutex<Index>,
    /// Held by a submit from its first trial written to its sweep record.
    submits: Mutex<()>,
    /// The first storage failure's cause, once there was one.
    failure: Arc<watch::Sender<Option<String>>>,
    group: Arc<Group>,
}

/// The `meta` key of the last sweep id given out (u64 BE).
const LAST_SWEEP_ID: &str = "last_sweep_id";

/// The `trials` key of a trial.
pub fn trial_key((sweep, index): TrialId) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&sweep.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn epoch_key(id: TrialId, attempt: u32, epoch: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..12].copy_from_slice(&trial_key(id));
    k[12..16].copy_from_slice(&attempt.to_be_bytes());
    k[16..].copy_from_slice(&epoch.to_be_bytes());
    k
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, Error> {
    Ok(M::decode(bytes)?)
}

/// Aborts a transaction with our error.
fn abort<T>(e: Error) -> Result<T, ConflictableTransactionError<Error>> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_get<M: Message + Default>(
    tree: &TransactionalTree,
    key: &[u8],
) -> Result<Option<M>, ConflictableTransactionError<Error>> {
    match tree.get(key)? {
        Some(bytes) => match M::decode(bytes.as_ref()) {
            Ok(m) => Ok(Some(m)),
            Err(e) => abort(e.into()),
        },
        None => Ok(None),
    }
}

fn tx_put<M: Message>(
    tree: &TransactionalTree,
    key: &[u8],
    m: &M,
) -> Result<(), ConflictableTransactionError<Error>> {
    tree.insert(key, m.encode_to_vec())?;
    Ok(())
}

/// Writes a trial and its summary (`picks`: its epochs, when it is finished).
fn tx_trial(
    trials: &TransactionalTree,
    summaries: &TransactionalTree,
    trial: &Trial,
    picks: Option<&Picks>,
) -> Result<(), ConflictableTransactionError<Error>> {
    let key = trial_key((trial.sweep_id, trial.index));
    tx_put(trials, &key, trial)?;
    tx_put(summaries, &key, &Summary::of(trial, picks))
}

/// Changes in a sweep's counts, per state.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Delta([i64; 6]);

fn slot(state: TrialState) -> usize {
    match state {
        TrialState::Pending | TrialState::Unspecified => 0,
        TrialState::Leased => 1,
        TrialState::Succeeded => 2,
        TrialState::Diverged => 3,
        TrialState::Failed => 4,
        TrialState::Cancelled => 5,
    }
}

impl Delta {
    fn moved(&mut self, from: TrialState, to: TrialState) {
        self.0[slot(from)] -= 1;
        self.0[slot(to)] += 1;
    }

    fn apply(&self, c: &mut TrialCounts) {
        for (field, d) in [
            &mut c.pending,
            &mut c.leased,
            &mut c.succeeded,
            &mut c.diverged,
            &mut c.failed,
            &mut c.cancelled,
        ]
        .into_iter()
        .zip(self.0)
        {
            *field = (i64::from(*field) + d).clamp(0, i64::from(u32::MAX)) as u32;
        }
    }
}

/// Counts a trial of `state`.
fn count(c: &mut TrialCounts, state: TrialState) {
    let mut d = Delta::default();
    d.0[slot(state)] = 1;
    d.apply(c);
}

/// Applies `delta` to sweep `sweep`'s stored counts.
fn tx_counts(
    counts: &TransactionalTree,
    sweep: u64,
    delta: &Delta,
) -> Result<(), ConflictableTransactionError<Error>> {
    if *delta == Delta::default() {
        return Ok(());
    }
    let key = sweep.to_be_bytes();
    let mut c: TrialCounts = tx_get(counts, &key)?.unwrap_or_default();
    delta.apply(&mut c);
    tx_put(counts, &key, &c)
}

/// A one-trial move as a delta.
fn delta(from: TrialState, to: TrialState) -> Delta {
    let mut d = Delta::default();
    d.moved(from, to);
    d
}

/// Removes every key of `tree` from `from` on, [`WRITE_CHUNK`] to a batch; returns how
/// many it removed.
fn remove_from(tree: &sled::Tree, from: &[u8]) -> Result<usize, Error> {
    let mut removed = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for entry in tree.range(from..).take(WRITE_CHUNK) {
            batch.remove(entry?.0);
            n += 1;
        }
        if n == 0 {
            return Ok(removed);
        }
        tree.apply_batch(batch)?;
        removed += n;
    }
}

/// Records a storage failure: one line on stderr, and the store refuses writes.
fn record_failure(failure: &watch::Sender<Option<String>>, cause: &str) {
    failure.send_if_modified(|f| {
        if f.is_none() {
            eprintln!("coordinator: storage: {cause}");
            *f = Some(cause.to_owned());
            true
        } else {
            false
        }
    });
}

fn untx<T>(r: Result<T, TransactionError<Error>>) -> Result<T, Error> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Storage(e),
    })
}

/// A stored u64 BE (a sweep key, the sweep id counter); anything else is corruption,
/// named by `what`.
fn be_u64(bytes: &[u8], what: &str) -> Result<u64, Error> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| {
        Error::Internal(format!(
            "{what}: {} bytes stored where an 8-byte id belongs",
            bytes.len()
        ))
    })?;
    Ok(u64::from_be_bytes(b))
}

/// Whether `trial` is leased under `lease`'s id.
fn holds(trial: &Trial, lease: &LeaseRef) -> bool {
    trial.state() == TrialState::Leased && trial.lease_id == lease.lease_id
}

fn stale(trial: &Trial, lease: &LeaseRef) -> Error {
    Error::StaleLease {
        sweep: lease.sweep_id,
        index: lease.index,
        lease_id: lease.lease_id,
        state: trial.state().as_str_name().to_owned(),
    }
}

/// The trial is leased under `lease`, to `lease.worker_id`.
fn check_holder(trial: &Trial, lease: &LeaseRef) -> Result<(), Error> {
    if !holds(trial, lease) {
        return Err(stale(trial, lease));
    }
    if trial.worker_id != lease.worker_id {
        return Err(Error::NotLeaseHolder {
            sweep: lease.sweep_id,
            index: lease.index,
            caller: lease.worker_id,
        });
    }
    Ok(())
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The non-zero random lease id of a new lease.
fn new_lease_id() -> Result<u64, Error> {
    loop {
        let id = getrandom::u64()
            .map_err(|e| Error::Internal(format!("the OS random number generator: {e}")))?;
        if id != 0 {
            return Ok(id);
        }
    }
}

fn bad(message: String) -> Error {
    Error::BadRequest(message)
}

/// Checks one value of a report: `what` names it.
fn check_range(what: &str, x: f64, low: f64, high: f64) -> Result<(), Error> {
    if x.is_finite() && x >= low && x <= high {
        Ok(())
    } else {
        Err(bad(format!("{what}: {x} is not in [{low}, {high}]")))
    }
}

/// A value that a blown-up last step may have made NaN or infinite (see
/// [`check_epoch_values`]) but that is never negative.
fn check_not_negative(what: &str, x: f64) -> Result<(), Error> {
    if x < 0.0 {
        Err(bad(format!("{what}: {x} is negative")))
    } else {
        Ok(())
    }
}

fn check_finite(what: &str, x: f64) -> Result<(), Error> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(bad(format!("{what}: {x} is not finite")))
    }
}

/// The values of one epoch's report. The worker reports an epoch only when its train
/// loss is finite (a NaN or infinite train loss is a divergence, reported by
/// `Complete`), so the train loss must be finite; but the epoch's last optimiser step
/// may have made the weights non-finite, and then the evaluation losses, the penalty
/// and the layer statistics measured after it are NaN or infinite (the next epoch
/// diverges). Those may therefore be non-finite, never negative; accuracies and times
/// are always finite and in range.
fn check_epoch_values(report: &EpochReport, layers: usize) -> Result<(), Error> {
    check_range("train_loss", report.train_loss, 0.0, f64::MAX)?;
    check_not_negative("val_loss", report.val_loss)?;
    check_not_negative("test_loss", report.test_loss)?;
    check_not_negative("penalty", report.penalty)?;
    check_range("train_accuracy", report.train_accuracy, 0.0, 1.0)?;
    check_range("val_accuracy", report.val_accuracy, 0.0, 1.0)?;
    check_range("test_accuracy", report.test_accuracy, 0.0, 1.0)?;
    check_range("seconds", report.seconds, 0.0, f64::MAX)?;
    if !report.layers.is_empty() && report.layers.len() != layers {
        return Err(bad(format!(
            "layers: {} layer diagnostics, the trial's net has {layers} Linear layers",
            report.layers.len()
        )));
    }
    for (i, l) in report.layers.iter().enumerate() {
        let what = |field: &str| format!("layers[{i}].{field}");
        if l.layer.len() > 64 {
            return Err(bad(format!(
                "{}: {} bytes, the limit is 64",
                what("layer"),
                l.layer.len()
            )));
        }
        check_not_negative(&what("weight_std"), l.weight_std)?;
        check_not_negative(&what("grad_norm"), l.grad_norm)?;
        check_not_negative(&what("grad_max_abs"), l.grad_max_abs)?;
        check_not_negative(&what("update_ratio"), l.update_ratio)?;
        check_not_negative(&what("change_since_start"), l.change_since_start)?;
        if let Some(d) = l.dead_fraction {
            check_range(&what("dead_fraction"), d, 0.0, 1.0)?;
        }
    }
    Ok(())
}

/// The parts of a result that do not depend on the stored epochs.
fn check_result_values(result: &TrialResult) -> Result<(), Error> {
    check_range("result.seconds", result.seconds, 0.0, f64::MAX)?;
    for (what, text, max) in [
        (
            "result.dataset_fingerprint",
            &result.dataset_fingerprint,
            256,
        ),
        ("result.device", &result.device, MAX_WORKER_TEXT),
        ("result.worker_name", &result.worker_name, MAX_WORKER_TEXT),
        (
            "result.gradcheck_skipped",
            &result.gradcheck_skipped,
            MAX_ERROR_TEXT,
        ),
    ] {
        if text.len() > max {
            return Err(bad(format!(
                "{what}: {} bytes, the limit is {max}",
                text.len()
            )));
        }
    }
    if result.verdicts.len() > 16 {
        return Err(bad(format!(
            "result.verdicts: {}, the limit is 16",
            result.verdicts.len()
        )));
    }
    for (i, v) in result.verdicts.iter().enumerate() {
        if v.name.len() + v.reason.len() > MAX_ERROR_TEXT {
            return Err(bad(format!(
                "result.verdicts[{i}]: {} bytes, the limit is {MAX_ERROR_TEXT}",
                v.name.len() + v.reason.len()
            )));
        }
    }
    if let Some(g) = &result.gradcheck {
        for (what, t) in [
            ("tolerance", &g.tolerance),
            ("device_tolerance", &g.device_tolerance),
        ] {
            if let Some(t) = t {
                check_finite(&format!("result.gradcheck.{what}.atol"), t.atol)?;
                check_finite(&format!("result.gradcheck.{what}.rtol"), t.rtol)?;
                check_finite(&format!("result.gradcheck.{what}.eps"), t.eps)?;
            }
        }
        for (what, layers) in [("layers", &g.layers), ("device_layers", &g.device_layers)] {
            if layers.len() > 1024 {
                return Err(bad(format!(
                    "result.gradcheck.{what}: {}, the limit is 1024",
                    layers.len()
                )));
            }
            for (i, l) in layers.iter().enumerate() {
                check_finite(
                    &format!("result.gradcheck.{what}[{i}].max_abs_error"),
                    l.max_abs_error,
                )?;
                check_finite(
                    &format!("result.gradcheck.{what}[{i}].max_rel_error"),
                    l.max_rel_error,
                )?;
            }
        }
    }
    Ok(())
}

fn config_of(trial: &Trial) -> Result<TrialConfig, Error> {
    TrialConfig::from_toml_str(&trial.config_toml).map_err(|e| {
        Error::Internal(format!(
            "trial {} of sweep {}: stored config does not parse: {e}",
            trial.index, trial.sweep_id
        ))
    })
}

fn now_wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Maps sled's "could not acquire lock" error to [`Error::Locked`].
fn open_error(path: &Path, e: sled::Error) -> Error {
    if let sled::Error::Io(io) = &e
        && io.to_string().starts_with("could not acquire lock")
    {
        return Error::Locked(path.to_owned());
    }
    Error::Storage(e)
}

impl Store {
    /// Opens (or creates) the database at `path` and rebuilds the in-memory index.
    /// Leases stored as running are given a fresh deadline (now + ttl): their workers
    /// get a whole TTL to reach this coordinator again. A database of another schema
    /// version is refused, one held by another coordinator is [`Error::Locked`].
    pub fn open(path: &Path, policy: LeasePolicy) -> Result<Store, Error> {
        Store::open_with(path, policy, StoreOptions::default())
    }

    /// [`Store::open`] with `options` (sled's cache size).
    pub fn open_with(
        path: &Path,
        policy: LeasePolicy,
        options: StoreOptions,
    ) -> Result<Store, Error> {
        Store::open_at_with(path, policy, now_wall_ms(), options)
    }

    /// [`Store::open`] at the time `now_ms`.
    pub fn open_at(path: &Path, policy: LeasePolicy, now_ms: u64) -> Result<Store, Error> {
        Store::open_at_with(path, policy, now_ms, StoreOptions::default())
    }

    fn open_at_with(
        path: &Path,
        policy: LeasePolicy,
        now_ms: u64,
        options: StoreOptions,
    ) -> Result<Store, Error> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .open()
            .map_err(|e| open_error(path, e))?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(v) => {
                let found = u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 4]));
                if found != SCHEMA_VERSION {
                    return Err(Error::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        let sweeps = db.open_tree("sweeps")?;
        // A database from before the counter (or one whose counter is behind, which
        // nothing writes) continues after its largest sweep id: keys are u64 BE, so
        // the last key is the largest.
        let largest = match sweeps.last()? {
            Some((k, _)) => be_u64(&k, "sweeps key")?,
            None => 0,
        };
        let counter = match meta.get(LAST_SWEEP_ID)? {
            Some(v) => be_u64(&v, LAST_SWEEP_ID)?,
            None => 0,
        };
        if counter < largest {
            meta.insert(LAST_SWEEP_ID, &largest.to_be_bytes())?;
        }
        let last_sweep = counter.max(largest);
        let (done, _) = watch::channel(0);
        let store = Store {
            sweeps,
            trials: db.open_tree("trials")?,
            summaries: db.open_tree("summaries")?,
            counts: db.open_tree("counts")?,
            epochs: db.open_tree("epochs")?,
            workers: db.open_tree("workers")?,
            meta,
            db,
            policy,
            index: Mutex::new(Index::default()),
            submits: Mutex::new(()),
            failure: Arc::new(watch::Sender::new(None)),
            group: Arc::new(Group {
                state: Mutex::new(GroupState::default()),
                done,
            }),
        };
        let orphans = store.remove_trials_above(last_sweep)?;
        if orphans > 0 {
            tracing::warn!(
                trials = orphans,
                "removed the trials of a submit that did not finish"
            );
        }
        let derived = match store.meta.get(DERIVED)? {
            Some(v) => u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 4])),
            None => 0,
        };
        if derived < DERIVED_VERSION {
            store.rebuild_derived()?;
        }
        let mut index = Index::default();
        for entry in store.sweeps.iter() {
            let (_, v) = entry?;
            let sweep: Sweep = decode(&v)?;
            index.sweeps.insert(
                sweep.id,
                SweepInfo {
                    cancelled: sweep.state() == SweepState::Cancelled,
                    fingerprint: sweep.dataset_fingerprint.clone(),
                },
            );
        }
        for entry in store.workers.iter() {
            let (_, v) = entry?;
            let worker = decode::<Worker>(&v)?;
            index.workers.insert(worker.id, worker.slots.max(1));
        }
        let deadline = now_ms + policy.ttl_ms;
        let mut renewed = Vec::new();
        // The summaries, not the trials: a few hundred bytes a trial rather than its
        // config, history and result. Only leased trials are read whole.
        let mut counted: HashMap<u64, TrialCounts> = HashMap::new();
        for entry in store.summaries.iter() {
            let (k, v) = entry?;
            let summary: Summary = decode(&v)?;
            let sweep = be_u64(&k[..8], "summaries key")?;
            let id = (sweep, summary.index);
            count(counted.entry(sweep).or_default(), summary.state());
            match summary.state() {
                TrialState::Pending | TrialState::Unspecified => {
                    index.pending.insert(id);
                }
                TrialState::Leased => {
                    let mut trial = store.trial(id)?;
                    if trial.state() != TrialState::Leased {
                        return Err(Error::Internal(format!(
                            "trial {} of sweep {}: its summary says LEASED, its record {}",
                            id.1,
                            id.0,
                            trial.state().as_str_name()
                        )));
                    }
                    index.hold(id, store.held_of(&trial, deadline)?);
                    trial.lease_deadline_unix_ms = deadline;
                    renewed.push((k, trial.encode_to_vec()));
                }
                _ => {}
            }
        }
        if !renewed.is_empty() {
            let mut batch = sled::Batch::default();
            for (k, v) in renewed {
                batch.insert(k, v);
            }
            store.trials.apply_batch(batch)?;
        }
        // The counts must say what the summaries say (they are written in the same
        // transactions; this catches a database edited by hand or an older binary).
        for &id in index.sweeps.keys() {
            let found = counted.remove(&id).unwrap_or_default();
            if store.stored_counts(id)? != found {
                tracing::warn!(
                    sweep = id,
                    "stored trial counts differed from the trials; recomputed"
                );
                store
                    .counts
                    .insert(id.to_be_bytes(), found.encode_to_vec())?;
            }
        }
        let cancelled: Vec<u64> = index
            .sweeps
            .iter()
            .filter(|(_, info)| info.cancelled)
            .map(|(&id, _)| id)
            .collect();
        *store.index.lock().expect("store index lock") = index;
        // A cancel that stopped midway: its sweep says cancelled, some trials are open.
        for id in cancelled {
            let c = store.stored_counts(id)?;
            if c.pending + c.leased > 0 {
                let n = store.cancel_open_trials(id)?;
                tracing::warn!(
                    sweep = id,
                    trials = n,
                    "finished cancelling a cancelled sweep's trials"
                );
            }
        }
        Ok(store)
    }

    /// Computes every trial's summary and every sweep's counts from the trials and
    /// their epochs (a database from before those trees), then marks them complete.
    fn rebuild_derived(&self) -> Result<(), Error> {
        let mut counts: HashMap<u64, TrialCounts> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in self.trials.iter() {
            let (k, v) = entry?;
            let trial: Trial = decode(&v)?;
            let id = (trial.sweep_id, trial.index);
            count(counts.entry(trial.sweep_id).or_default(), trial.state());
            let picks = if matches!(trial.state(), TrialState::Succeeded | TrialState::Diverged) {
                Some(self.picks(id, trial.attempt)?)
            } else {
                None
            };
            batch.insert(k, Summary::of(&trial, picks.as_ref()).encode_to_vec());
            pending += 1;
            if pending == WRITE_CHUNK {
                self.summaries.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        self.summaries.apply_batch(batch)?;
        for entry in self.sweeps.iter() {
            let (k, _) = entry?;
            let id = be_u64(&k, "sweeps key")?;
            let c = counts.remove(&id).unwrap_or_default();
            self.counts.insert(k, c.encode_to_vec())?;
        }
        self.db.flush()?;
        self.meta.insert(DERIVED, &DERIVED_VERSION.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes the trials (and summaries) of sweep ids above `last`, the sweep id
    /// counter: what a submit that did not reach its final transaction left.
    /// Returns how many trials it removed.
    fn remove_trials_above(&self, last: u64) -> Result<usize, Error> {
        let Some(first) = last.checked_add(1) else {
            return Ok(0);
        };
        let from = trial_key((first, 0));
        let removed = remove_from(&self.trials, &from)?;
        remove_from(&self.summaries, &from)?;
        Ok(removed)
    }

    /// A sweep's stored counts (zero when none are stored).
    fn stored_counts(&self, sweep: u64) -> Result<TrialCounts, Error> {
        Ok(match self.counts.get(sweep.to_be_bytes())? {
            Some(v) => decode(&v)?,
            None => TrialCounts::default(),
        })
    }

    /// The index entry of a leased trial: its lease, attempt and epochs stored, and
    /// its config's epochs and layers.
    fn held_of(&self, trial: &Trial, deadline: u64) -> Result<Held, Error> {
        let id = (trial.sweep_id, trial.index);
        let config = config_of(trial)?;
        let (stored, _) = self.last_epoch(id, trial.attempt)?;
        Ok(Held {
            deadline,
            worker: trial.worker_id,
            lease_id: trial.lease_id,
            attempt: trial.attempt,
            stored,
            epochs: config.epochs,
            layers: config.hidden.len() as u32 + 1,
        })
    }

    /// The picks of an attempt's stored epochs.
    fn picks(&self, id: TrialId, attempt: u32) -> Result<Picks, Error> {
        let mut prefix = trial_key(id).to_vec();
        prefix.extend_from_slice(&attempt.to_be_bytes());
        let reports = self
            .epochs
            .scan_prefix(prefix)
            .map(|entry| decode::<EpochReport>(&entry?.1))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Picks::of(reports))
    }

    /// The lease policy in force.
    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// The first storage failure's cause, if the store has had one (it then refuses
    /// every write).
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Resolves, with its cause, once a write or flush has failed.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.subscribe();
        let cause = rx
            .wait_for(Option::is_some)
            .await
            .map(|cause| cause.clone().unwrap_or_default());
        match cause {
            Ok(cause) => cause,
            // The sender lives as long as the store.
            Err(_) => std::future::pending().await,
        }
    }

    /// Records a storage failure: one line on stderr, and the store refuses writes.
    fn storage_failed(&self, cause: &str) {
        record_failure(&self.failure, cause);
    }

    /// Runs a write: refused at once after a storage failure; a storage error it
    /// meets becomes the store's failure.
    fn write<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        if let Some(cause) = self.failure() {
            return Err(Error::StorageFailed(cause));
        }
        let result = f();
        if let Err(e @ Error::Storage(_)) = &result {
            let line = e.to_string();
            self.storage_failed(line.strip_prefix("storage: ").unwrap_or(&line));
        }
        result
    }

    /// Returns once every write made before the call is on disk. Concurrent callers
    /// share flushes (a group commit): one flusher at a time runs sled's blocking
    /// flush on tokio's blocking pool (sled 0.34's `flush_async` can wait forever when
    /// nothing else writes), and a caller is answered by the first flush that *started*
    /// after it called, with everyone else who called before that flush began. After
    /// a storage failure it is refused at once; a caller whose flush has not finished
    /// within [`FLUSH_TIMEOUT`] takes that as one.
    pub async fn flush(&self) -> Result<(), Error> {
        if let Some(cause) = self.failure() {
            return Err(Error::StorageFailed(cause));
        }
        let mut done = self.group.done.subscribe();
        let target = {
            let mut g = self.group.state.lock().expect("flush group lock");
            if g.running {
                // The running flush may have started before our write: wait for the next.
                let target = g.started + 1;
                g.wanted = g.wanted.max(target);
                target
            } else {
                g.running = true;
                g.started += 1;
                g.wanted = g.started;
                let target = g.started;
                drop(g);
                self.start_flusher();
                target
            }
        };
        // `wait_for`'s answer holds the channel's read lock: dropped here, before the
        // group's lock is taken (the flusher takes them the other way round).
        let waited = tokio::time::timeout(FLUSH_TIMEOUT, done.wait_for(|&d| d >= target))
            .await
            .map(|r| r.map(|_| ()));
        if let Some(cause) = self
            .group
            .state
            .lock()
            .expect("flush group lock")
            .failed
            .clone()
        {
            return Err(Error::FlushFailed(cause));
        }
        match waited {
            Ok(Ok(_)) => match self.failure() {
                Some(cause) => Err(Error::StorageFailed(cause)),
                None => Ok(()),
            },
            Ok(Err(_)) => Err(Error::Internal("the flusher is gone".into())),
            Err(_) => {
                let cause = format!(
                    "a flush did not finish within {} s",
                    FLUSH_TIMEOUT.as_secs()
                );
                self.storage_failed(&cause);
                Err(Error::StorageFailed(cause))
            }
        }
    }

    /// Runs flushes on the blocking pool while writers want them.
    fn start_flusher(&self) {
        let db = self.db.clone();
        let group = self.group.clone();
        let failure = self.failure.clone();
        tokio::task::spawn_blocking(move || {
            loop {
                // After a failure sled's flush may wait forever: flush no more.
                if failure.borrow().is_none()
                    && let Err(e) = db.flush()
                {
                    let line = Error::Storage(e).to_string();
                    let cause = line.strip_prefix("storage: ").unwrap_or(&line).to_owned();
                    record_failure(&failure, &cause);
                    let mut g = group.state.lock().expect("flush group lock");
                    g.failed.get_or_insert(cause);
                }
                let mut g = group.state.lock().expect("flush group lock");
                // Never blocks on a waiter: waiters hold the channel's lock only to read.
                group.done.send_replace(g.started);
                if g.wanted > g.started && g.failed.is_none() {
                    g.started += 1;
                } else {
                    g.running = false;
                    if g.failed.is_some() {
                        // Wake everyone: they are refused with the cause.
                        group.done.send_replace(u64::MAX);
                    }
                    return;
                }
            }
        });
    }

    /// Writes everything to disk, blocking.
    pub fn flush_blocking(&self) -> Result<(), Error> {
        self.write(|| {
            self.db.flush()?;
            Ok(())
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("store index lock")
    }

    // -----------------------------------------------------------------------------------
    // Sweeps
    // -----------------------------------------------------------------------------------

    /// Stores a sweep and all its trials, `PENDING`: the trials in chunks of
    /// [`WRITE_CHUNK`], then the sweep's record, counts and id in one transaction, which
    /// is what makes them a sweep (a crash before it leaves nothing a reader sees).
    pub fn submit(&self, new: &NewSweep<'_>, now_ms: u64) -> Result<Sweep, Error> {
        let sweep = self.write(|| {
            // Submits take turns (only they advance the counter, so the one read here is
            // the one the final transaction advances; it checks all the same). The
            // trials are written without the index lock, which only the final
            // transaction takes: a large submit does not hold up leases and reports.
            let _submitting = self.submits.lock().expect("submit lock");
            let last = match self.meta.get(LAST_SWEEP_ID)? {
                Some(v) => be_u64(&v, LAST_SWEEP_ID)?,
                None => 0,
            };
            let id = last
                .checked_add(1)
                .ok_or_else(|| Error::Internal("sweep ids are exhausted".into()))?;
            let sweep = Sweep {
                id,
                name: new.name.to_owned(),
                spec_toml: new.spec_toml.to_owned(),
                state: SweepState::Running as i32,
                created_unix_ms: now_ms,
                axes: new
                    .axes
                    .iter()
                    .map(|a| gradsweep_proto::Axis {
                        key: a.key.clone(),
                        labels: a.labels.clone(),
                    })
                    .collect(),
                seeds: new.seeds.to_vec(),
                trial_count: new.trials.len() as u32,
                counts: None,
                dataset_fingerprint: String::new(),
            };
            // The trials go in chunks (one transaction of a whole large sweep keeps
            // hundreds of MB in sled's memory), under an id no sweep record names yet;
            // the sweep becomes visible (and its trials leasable) with the small
            // transaction that stores its record and advances the counter. Trials left
            // by a submit that did not finish are above the counter: removed here and
            // when the database is opened.
            self.remove_trials_above(last)?;
            for chunk in new.trials.chunks(WRITE_CHUNK) {
                let mut trials = sled::Batch::default();
                let mut summaries = sled::Batch::default();
                for t in chunk {
                    let trial = Trial {
                        sweep_id: id,
                        index: t.index as u32,
                        key: t.key.clone(),
                        config_toml: t.toml.clone(),
                        choice: t.choice.iter().map(|&c| c as u32).collect(),
                        seed: t.config.seed,
                        state: TrialState::Pending as i32,
                        ..Trial::default()
                    };
                    let key = trial_key((id, t.index as u32));
                    trials.insert(&key[..], trial.encode_to_vec());
                    summaries.insert(&key[..], Summary::of(&trial, None).encode_to_vec());
                }
                self.trials.apply_batch(trials)?;
                self.summaries.apply_batch(summaries)?;
            }
            let counts = TrialCounts {
                pending: new.trials.len() as u32,
                ..TrialCounts::default()
            }
            .encode_to_vec();
            let mut index = self.lock();
            untx((&self.sweeps, &self.counts, &self.meta).transaction(
                |(sweeps, counts_tree, meta)| {
                    let stored = meta.get(LAST_SWEEP_ID)?;
                    if stored.as_deref().unwrap_or(&[0u8; 8][..]) != last.to_be_bytes() {
                        return Err(ConflictableTransactionError::Abort(Error::Internal(
                            "the sweep id counter changed during a submit".into(),
                        )));
                    }
                    tx_put(sweeps, &id.to_be_bytes(), &sweep)?;
                    counts_tree.insert(&id.to_be_bytes(), counts.as_slice())?;
                    meta.insert(LAST_SWEEP_ID, &id.to_be_bytes())?;
                    Ok(())
                },
            ))?;
            index.sweeps.insert(id, SweepInfo::default());
            index
                .pending
                .extend((0..new.trials.len() as u32).map(|i| (id, i)));
            Ok(sweep)
        })?;
        self.with_counts(sweep)
    }

    /// One sweep, with its trial counts and state.
    pub fn sweep(&self, id: u64) -> Result<Sweep, Error> {
        let bytes = self
            .sweeps
            .get(id.to_be_bytes())?
            .ok_or(Error::NoSweep(id))?;
        self.with_counts(decode(&bytes)?)
    }

    /// Every sweep, newest first.
    pub fn sweeps(&self) -> Result<Vec<Sweep>, Error> {
        let mut out = Vec::new();
        for entry in self.sweeps.iter().rev() {
            let (_, v) = entry?;
            out.push(self.with_counts(decode(&v)?)?);
        }
        Ok(out)
    }

    fn with_counts(&self, mut sweep: Sweep) -> Result<Sweep, Error> {
        let counts = self.stored_counts(sweep.id)?;
        if sweep.state() != SweepState::Cancelled {
            let open = counts.pending + counts.leased;
            sweep.set_state(if open == 0 {
                SweepState::Finished
            } else {
                SweepState::Running
            });
        }
        sweep.counts = Some(counts);
        Ok(sweep)
    }

    /// A sweep's trials' compact records, in index order: one small record per trial
    /// (no config, history, result or layer diagnostics). A sweep that does not exist
    /// has none.
    pub fn summaries(
        &self,
        sweep: u64,
    ) -> impl DoubleEndedIterator<Item = Result<Summary, Error>> + Send + 'static {
        self.summaries
            .scan_prefix(sweep.to_be_bytes())
            .map(|entry| decode::<Summary>(&entry?.1))
    }

    /// One trial's compact record.
    pub fn summary(&self, id: TrialId) -> Result<Summary, Error> {
        let bytes = self
            .summaries
            .get(trial_key(id))?
            .ok_or(Error::NoTrial(id.0, id.1))?;
        decode(&bytes)
    }

    /// Every trial of a sweep, in index order.
    pub fn trials_of(&self, sweep: u64) -> Result<Vec<Trial>, Error> {
        self.trials
            .scan_prefix(sweep.to_be_bytes())
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// One trial.
    pub fn trial(&self, id: TrialId) -> Result<Trial, Error> {
        let bytes = self
            .trials
            .get(trial_key(id))?
            .ok_or(Error::NoTrial(id.0, id.1))?;
        decode(&bytes)
    }

    /// The epochs of a trial's current attempt (for a finished trial: the attempt that
    /// finished it), in epoch order.
    pub fn epochs(&self, id: TrialId) -> Result<Vec<EpochReport>, Error> {
        let trial = self.trial(id)?;
        let mut prefix = trial_key(id).to_vec();
        prefix.extend_from_slice(&trial.attempt.to_be_bytes());
        self.epochs
            .scan_prefix(prefix)
            .map(|entry| decode(&entry?.1))
            .collect()
    }

    /// The last stored epoch of an attempt (its number, which is also how many are
    /// stored, since they are stored in sequence from 1) and its encoded report.
    fn last_epoch(&self, id: TrialId, attempt: u32) -> Result<(u32, Option<sled::IVec>), Error> {
        let mut prefix = trial_key(id).to_vec();
        prefix.extend_from_slice(&attempt.to_be_bytes());
        match self.epochs.scan_prefix(prefix).next_back() {
            None => Ok((0, None)),
            Some(entry) => {
                let (k, v) = entry?;
                let epoch = k
                    .get(16..20)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes);
                Ok((epoch, Some(v)))
            }
        }
    }

    /// Cancels a sweep and every pending or leased trial of it. The sweep's record is
    /// written first; its open trials follow in transactions of [`WRITE_CHUNK`] (each
    /// with its counts), and a cancel that stops midway is finished when the database
    /// is next opened. Leased trials' workers learn it at their next heartbeat.
    pub fn cancel(&self, sweep_id: u64) -> Result<Sweep, Error> {
        let sweep = self.write(|| {
            let sweep = {
                let mut index = self.lock();
                let bytes = self
                    .sweeps
                    .get(sweep_id.to_be_bytes())?
                    .ok_or(Error::NoSweep(sweep_id))?;
                let mut sweep: Sweep = decode(&bytes)?;
                sweep.set_state(SweepState::Cancelled);
                self.sweeps
                    .insert(sweep_id.to_be_bytes(), sweep.encode_to_vec())?;
                // From here no trial of the sweep is leased (`lease` skips it).
                index.sweeps.entry(sweep_id).or_default().cancelled = true;
                sweep
            };
            self.cancel_open_trials(sweep_id)?;
            Ok(sweep)
        })?;
        self.with_counts(sweep)
    }

    /// Cancels a cancelled sweep's pending and leased trials, [`WRITE_CHUNK`] to a
    /// transaction, each chunk read and written under the index lock (and the lock let
    /// go between chunks, so that a large cancel does not hold up leases and reports).
    /// Returns how many it cancelled.
    fn cancel_open_trials(&self, sweep_id: u64) -> Result<usize, Error> {
        // The summaries say which trials are open; only those are read whole. None
        // opens later: a cancelled sweep's trials are neither leased nor retried.
        let mut open = Vec::new();
        for summary in self.summaries(sweep_id) {
            let summary = summary?;
            if matches!(summary.state(), TrialState::Pending | TrialState::Leased) {
                open.push(summary.index);
            }
        }
        let mut cancelled = 0;
        for chunk in open.chunks(WRITE_CHUNK) {
            let mut index = self.lock();
            let mut trials = Vec::with_capacity(chunk.len());
            let mut moved = Delta::default();
            for &i in chunk {
                let trial = self.trial((sweep_id, i))?;
                if matches!(trial.state(), TrialState::Pending | TrialState::Leased) {
                    moved.moved(trial.state(), TrialState::Cancelled);
                    trials.push(trial);
                }
            }
            untx((&self.trials, &self.summaries, &self.counts).transaction(
                |(trials_tree, summaries, counts)| {
                    for trial in &trials {
                        let mut t = trial.clone();
                        t.set_state(TrialState::Cancelled);
                        t.lease_deadline_unix_ms = 0;
                        tx_trial(trials_tree, summaries, &t, None)?;
                    }
                    tx_counts(counts, sweep_id, &moved)?;
                    Ok(())
                },
            ))?;
            for trial in &trials {
                let id = (trial.sweep_id, trial.index);
                index.pending.remove(&id);
                index.release(&id);
            }
            cancelled += trials.len();
        }
        Ok(cancelled)
    }

    /// Requeues a sweep's FAILED trials (and DIVERGED ones with `include_diverged`) as
    /// new attempts with `failures` and `lost` reset and a RETRIED entry in their
    /// history, in transactions of [`WRITE_CHUNK`] trials. Returns the sweep and how
    /// many were requeued. A cancelled sweep is refused.
    pub fn retry(
        &self,
        sweep_id: u64,
        include_diverged: bool,
        now_ms: u64,
    ) -> Result<(Sweep, u32), Error> {
        let (sweep, requeued) = self.write(|| {
            let mut index = self.lock();
            let bytes = self
                .sweeps
                .get(sweep_id.to_be_bytes())?
                .ok_or(Error::NoSweep(sweep_id))?;
            let sweep: Sweep = decode(&bytes)?;
            if sweep.state() == SweepState::Cancelled {
                return Err(bad(format!(
                    "sweep {sweep_id} is cancelled: its trials are not retried"
                )));
            }
            let mut chosen = Vec::new();
            for summary in self.summaries(sweep_id) {
                let summary = summary?;
                if !matches!(summary.state(), TrialState::Failed | TrialState::Diverged) {
                    continue;
                }
                let mut t = self.trial((sweep_id, summary.index))?;
                let was = t.state();
                if !(was == TrialState::Failed || include_diverged && was == TrialState::Diverged) {
                    continue;
                }
                let worker_name = self.worker_name(t.worker_id);
                let reason = if t.error.is_empty() {
                    format!("requeued by a user (was {})", was.as_str_name())
                } else {
                    format!(
                        "requeued by a user (was {}: {})",
                        was.as_str_name(),
                        t.error
                    )
                };
                t.history.push(AttemptEnd {
                    attempt: t.attempt,
                    kind: AttemptEndKind::Retried as i32,
                    worker_id: t.worker_id,
                    worker_name,
                    reason: cut(&reason, MAX_ERROR_TEXT),
                    ended_unix_ms: now_ms,
                });
                t.attempt += 1;
                t.failures = 0;
                t.lost = 0;
                t.set_state(TrialState::Pending);
                t.worker_id = 0;
                t.lease_id = 0;
                t.lease_deadline_unix_ms = 0;
                t.result = None;
                t.error.clear();
                chosen.push((t, was));
            }
            // In transactions of WRITE_CHUNK trials, each with its counts: a retry
            // that stops midway has requeued whole chunks, and the rest stay for
            // another retry.
            for chunk in chosen.chunks(WRITE_CHUNK) {
                let mut moved = Delta::default();
                for (_, was) in chunk {
                    moved.moved(*was, TrialState::Pending);
                }
                untx((&self.trials, &self.summaries, &self.counts).transaction(
                    |(trials, summaries, counts)| {
                        for (t, _) in chunk {
                            tx_trial(trials, summaries, t, None)?;
                        }
                        tx_counts(counts, sweep_id, &moved)?;
                        Ok(())
                    },
                ))?;
                for (t, _) in chunk {
                    index.pending.insert((t.sweep_id, t.index));
                }
            }
            Ok((sweep, chosen.len() as u32))
        })?;
        Ok((self.with_counts(sweep)?, requeued))
    }

    // -----------------------------------------------------------------------------------
    // Workers
    // -----------------------------------------------------------------------------------

    /// Registers a worker and returns its record (with a fresh, non-zero id). A name or device
    /// longer than [`MAX_WORKER_TEXT`] bytes, or slots outside 1..=[`MAX_SLOTS`], is
    /// refused.
    pub fn register(
        &self,
        name: &str,
        device: &str,
        slots: u32,
        now_ms: u64,
    ) -> Result<Worker, Error> {
        for (what, text) in [("name", name), ("device", device)] {
            if text.len() > MAX_WORKER_TEXT {
                return Err(bad(format!(
                    "{what}: {} bytes, the limit is {MAX_WORKER_TEXT}",
                    text.len()
                )));
            }
        }
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(bad(format!("slots: {slots}, must be 1 to {MAX_SLOTS}")));
        }
        self.write(|| {
            // Never 0: that is what a request that names no worker says.
            let mut id = self.db.generate_id()?;
            if id == 0 {
                id = self.db.generate_id()?;
            }
            let worker = Worker {
                id,
                name: name.to_owned(),
                device: device.to_owned(),
                slots,
                registered_unix_ms: now_ms,
                last_seen_unix_ms: now_ms,
            };
            self.workers
                .insert(worker.id.to_be_bytes(), worker.encode_to_vec())?;
            self.lock().workers.insert(worker.id, slots);
            Ok(worker)
        })
    }

    /// A registered worker.
    pub fn worker(&self, id: u64) -> Result<Worker, Error> {
        let bytes = self
            .workers
            .get(id.to_be_bytes())?
            .ok_or(Error::NoWorker(id))?;
        decode(&bytes)
    }

    /// A worker's name, or empty when it is unknown.
    fn worker_name(&self, id: u64) -> String {
        self.worker(id).map(|w| w.name).unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------
    // Leases
    // -----------------------------------------------------------------------------------

    /// Leases up to `max` pending trials to `worker_id` (first requeuing expired
    /// leases), but no more than its registered slots minus the leases it holds. Each
    /// lease is one transaction: `PENDING → LEASED(worker, new lease id, now + ttl)`.
    pub fn lease(&self, worker_id: u64, max: usize, now_ms: u64) -> Result<Vec<TrialLease>, Error> {
        self.write(|| {
            let mut index = self.lock();
            self.expire_locked(&mut index, now_ms)?;
            let Some(&slots) = index.workers.get(&worker_id) else {
                return Err(Error::NoWorker(worker_id));
            };
            let held = index.held.get(&worker_id).copied().unwrap_or(0);
            let max = max.min(slots.saturating_sub(held) as usize);
            let mut out = Vec::new();
            while out.len() < max {
                let Some(id) = index.pending.pop_first() else {
                    break;
                };
                if index.sweeps.get(&id.0).is_some_and(|s| s.cancelled) {
                    // A cancel is still writing this sweep's trials: it cancels this one.
                    continue;
                }
                let lease_id = new_lease_id()?;
                let deadline = now_ms + self.policy.ttl_ms;
                let leased = untx((&self.trials, &self.summaries, &self.counts).transaction(
                    |(trials, summaries, counts)| {
                        let key = trial_key(id);
                        let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                            return Ok(None);
                        };
                        if trial.state() != TrialState::Pending {
                            return Ok(None);
                        }
                        let was = trial.state();
                        trial.set_state(TrialState::Leased);
                        trial.worker_id = worker_id;
                        trial.lease_id = lease_id;
                        trial.lease_deadline_unix_ms = deadline;
                        tx_trial(trials, summaries, &trial, None)?;
                        tx_counts(counts, id.0, &delta(was, TrialState::Leased))?;
                        Ok(Some(trial))
                    },
                ))
                .and_then(|leased| match leased {
                    Some(trial) => Ok(Some((self.held_of(&trial, deadline)?, trial))),
                    None => Ok(None),
                });
                let leased = match leased {
                    Ok(leased) => leased,
                    Err(e) => {
                        index.pending.insert(id);
                        return Err(e);
                    }
                };
                if let Some((held, trial)) = leased {
                    index.hold(id, held);
                    let fingerprint = index
                        .sweeps
                        .get(&id.0)
                        .map(|s| s.fingerprint.clone())
                        .unwrap_or_default();
                    out.push(TrialLease {
                        sweep_id: trial.sweep_id,
                        index: trial.index,
                        key: trial.key,
                        config_toml: trial.config_toml,
                        attempt: trial.attempt,
                        lease_id,
                        deadline_unix_ms: deadline,
                        dataset_fingerprint: fingerprint,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Renews the worker's leases that are still current; the others are revoked
    /// (cancelled with their sweep, or expired and given to another attempt). A lease
    /// that is current but another worker's refuses the whole call
    /// ([`Error::NotLeaseHolder`]) and nothing changes.
    pub fn heartbeat(
        &self,
        worker_id: u64,
        leases: &[LeaseRef],
        now_ms: u64,
    ) -> Result<HeartbeatOutcome, Error> {
        self.write(|| {
            let mut worker = self.worker(worker_id)?;
            let mut index = self.lock();
            for lease in leases {
                let id = (lease.sweep_id, lease.index);
                if let Ok(trial) = self.trial(id)
                    && holds(&trial, lease)
                    && trial.worker_id != worker_id
                {
                    return Err(Error::NotLeaseHolder {
                        sweep: id.0,
                        index: id.1,
                        caller: worker_id,
                    });
                }
            }
            worker.last_seen_unix_ms = now_ms;
            self.workers
                .insert(worker_id.to_be_bytes(), worker.encode_to_vec())?;
            let mut out = HeartbeatOutcome::default();
            let deadline = now_ms + self.policy.ttl_ms;
            for lease in leases {
                let id = (lease.sweep_id, lease.index);
                let renewed = untx(self.trials.transaction(|trials| {
                    let key = trial_key(id);
                    let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                        return Ok(Err(RevokeReason::Expired));
                    };
                    if !holds(&trial, lease) || trial.worker_id != worker_id {
                        return Ok(Err(if trial.state() == TrialState::Cancelled {
                            RevokeReason::Cancelled
                        } else {
                            RevokeReason::Expired
                        }));
                    }
                    trial.lease_deadline_unix_ms = deadline;
                    tx_put(trials, &key, &trial)?;
                    Ok(Ok(()))
                }))?;
                match renewed {
                    Ok(()) => {
                        match index.leased.get_mut(&id) {
                            Some(held) => held.deadline = deadline,
                            None => {
                                let held = self.held_of(&self.trial(id)?, deadline)?;
                                index.hold(id, held);
                            }
                        }
                        out.renewed.push(*lease);
                    }
                    Err(reason) => out.revoked.push(RevokedLease {
                        lease: Some(*lease),
                        reason: reason as i32,
                    }),
                }
            }
            Ok(out)
        })
    }

    /// Requeues every trial whose lease deadline is before `now_ms` (a new attempt,
    /// `lost` + 1, or `FAILED` at `max_lost`). Returns how many leases ended.
    pub fn expire(&self, now_ms: u64) -> Result<usize, Error> {
        self.write(|| self.expire_locked(&mut self.lock(), now_ms))
    }

    fn expire_locked(&self, index: &mut Index, now_ms: u64) -> Result<usize, Error> {
        let due: Vec<TrialId> = index
            .leased
            .iter()
            .filter(|&(_, held)| held.deadline < now_ms)
            .map(|(&id, _)| id)
            .collect();
        let mut ended = 0;
        for id in due {
            let trial = self.trial(id)?;
            if trial.state() != TrialState::Leased || trial.lease_deadline_unix_ms >= now_ms {
                if trial.state() != TrialState::Leased {
                    index.release(&id);
                }
                continue;
            }
            let lease = LeaseRef {
                sweep_id: id.0,
                index: id.1,
                lease_id: trial.lease_id,
                worker_id: trial.worker_id,
            };
            let reason = format!(
                "the lease expired: worker {} sent no heartbeat for {} ms (attempt {})",
                trial.worker_id, self.policy.ttl_ms, trial.attempt
            );
            let state =
                self.give_back_locked(index, &lease, AttemptEndKind::Expired, &reason, now_ms)?;
            tracing::info!(sweep = id.0, index = id.1, worker = trial.worker_id, state = state.as_str_name(), %reason, "worker lost: its lease expired");
            ended += 1;
        }
        Ok(ended)
    }

    /// Gives a leased trial back with an error (or the reason it was given back): it is
    /// requeued as a new attempt, or `FAILED` when `failures` reaches `max_attempts`
    /// (an error) or `lost` reaches `max_lost` (a hand-back or a dataset mismatch).
    /// Returns the new state. A stale lease, or another worker's, is refused.
    pub fn fail(
        &self,
        lease: &LeaseRef,
        kind: FailKind,
        error: &str,
        now_ms: u64,
    ) -> Result<TrialState, Error> {
        let kind = match kind {
            FailKind::Unspecified | FailKind::Error => AttemptEndKind::Error,
            FailKind::HandBack => AttemptEndKind::HandedBack,
            FailKind::DatasetMismatch => AttemptEndKind::DatasetMismatch,
        };
        self.write(|| {
            let mut index = self.lock();
            let trial = self.trial((lease.sweep_id, lease.index))?;
            check_holder(&trial, lease)?;
            self.give_back_locked(&mut index, lease, kind, error, now_ms)
        })
    }

    fn give_back_locked(
        &self,
        index: &mut Index,
        lease: &LeaseRef,
        kind: AttemptEndKind,
        reason: &str,
        now_ms: u64,
    ) -> Result<TrialState, Error> {
        let id = (lease.sweep_id, lease.index);
        let policy = self.policy;
        let reason = cut(reason, MAX_ERROR_TEXT);
        let worker_name = self.worker_name(lease.worker_id);
        let state = untx((&self.trials, &self.summaries, &self.counts).transaction(
            |(trials, summaries, counts)| {
                let key = trial_key(id);
                let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                    return abort(Error::NoTrial(id.0, id.1));
                };
                if !holds(&trial, lease) {
                    return abort(stale(&trial, lease));
                }
                let was = trial.state();
                trial.history.push(AttemptEnd {
                    attempt: trial.attempt,
                    kind: kind as i32,
                    worker_id: trial.worker_id,
                    worker_name: worker_name.clone(),
                    reason: reason.clone(),
                    ended_unix_ms: now_ms,
                });
                if kind == AttemptEndKind::Error {
                    trial.failures += 1;
                } else {
                    trial.lost += 1;
                }
                trial.lease_deadline_unix_ms = 0;
                trial.lease_id = 0;
                if trial.failures >= policy.max_attempts {
                    trial.set_state(TrialState::Failed);
                    trial.error = if policy.max_attempts == 1 {
                        reason.clone()
                    } else {
                        format!("{reason} (failed {} attempts)", trial.failures)
                    };
                } else if trial.lost >= policy.max_lost {
                    trial.set_state(TrialState::Failed);
                    trial.error = format!(
                        "{} attempts were lost to expired leases, hand-backs or dataset \
                     mismatches (the limit, --max-lost); the last: {reason}",
                        trial.lost
                    );
                } else {
                    trial.error = reason.clone();
                    trial.attempt += 1;
                    trial.set_state(TrialState::Pending);
                    trial.worker_id = 0;
                }
                tx_trial(trials, summaries, &trial, None)?;
                tx_counts(counts, id.0, &delta(was, trial.state()))?;
                Ok(trial.state())
            },
        ))?;
        index.release(&id);
        if state == TrialState::Pending {
            index.pending.insert(id);
        }
        Ok(state)
    }

    /// Stores one epoch of a leased trial (under its current attempt). The epoch must
    /// be the next one (an exact repeat of the last stored one is a no-op: workers
    /// retry), within the trial's epochs, with values in range; anything else is
    /// refused ([`Error::BadRequest`]) and stores nothing, as is a stale lease or
    /// another worker's.
    pub fn report_epoch(&self, lease: &LeaseRef, report: &EpochReport) -> Result<(), Error> {
        self.report_epochs(&[(*lease, report)])
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no outcome for a report".into())))
    }

    /// Stores several epoch reports (of any of the caller's leases), each checked as
    /// [`Store::report_epoch`] checks it, in order (a later report of the same trial
    /// sees the earlier ones), and answered on its own: a refused report stores
    /// nothing and refuses nothing else. The accepted ones are written in one batch.
    pub fn report_epochs(&self, reports: &[(LeaseRef, &EpochReport)]) -> Vec<Result<(), Error>> {
        if let Some(cause) = self.failure() {
            return reports
                .iter()
                .map(|_| Err(Error::StorageFailed(cause.clone())))
                .collect();
        }
        let mut index = self.lock();
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut batch = sled::Batch::default();
        let mut accepted = 0;
        // Per trial in this call: the epochs stored once the batch is written, and the
        // last accepted report's bytes.
        let mut stored: HashMap<TrialId, (u32, Vec<u8>)> = HashMap::new();
        for (lease, report) in reports {
            let outcome = self.check_report(&index, &stored, lease, report);
            outcomes.push(match outcome {
                Ok(Some((key, bytes))) => {
                    batch.insert(&key[..], bytes.as_slice());
                    stored.insert((lease.sweep_id, lease.index), (report.epoch, bytes));
                    accepted += 1;
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            });
        }
        if accepted == 0 {
            return outcomes;
        }
        if let Err(e) = self.epochs.apply_batch(batch) {
            let line = Error::Storage(e).to_string();
            let cause = line.strip_prefix("storage: ").unwrap_or(&line).to_owned();
            self.storage_failed(&cause);
            return outcomes
                .into_iter()
                .map(|o| o.and(Err(Error::FlushFailed(cause.clone()))))
                .collect();
        }
        for (id, (epoch, _)) in stored {
            if let Some(held) = index.leased.get_mut(&id) {
                held.stored = epoch;
            }
        }
        outcomes
    }

    /// Checks one report against the index (and what this call accepted before it):
    /// the key and bytes to store, or `None` for an exact repeat of the last epoch.
    #[allow(clippy::type_complexity)]
    fn check_report(
        &self,
        index: &Index,
        accepted: &HashMap<TrialId, (u32, Vec<u8>)>,
        lease: &LeaseRef,
        report: &EpochReport,
    ) -> Result<Option<([u8; 20], Vec<u8>)>, Error> {
        let id = (lease.sweep_id, lease.index);
        let held = match index.leased.get(&id) {
            Some(held) if held.lease_id == lease.lease_id => *held,
            _ => {
                // Not held under this lease: the trial's record says why.
                let trial = self.trial(id)?;
                check_holder(&trial, lease)?;
                return Err(Error::Internal(format!(
                    "trial {} of sweep {} is leased but not in the lease index",
                    id.1, id.0
                )));
            }
        };
        if held.worker != lease.worker_id {
            return Err(Error::NotLeaseHolder {
                sweep: id.0,
                index: id.1,
                caller: lease.worker_id,
            });
        }
        let stored = accepted.get(&id).map_or(held.stored, |(e, _)| *e);
        let bytes = report.encode_to_vec();
        if report.epoch == stored && stored > 0 {
            let same = match accepted.get(&id) {
                Some((_, last)) => last.as_slice() == bytes.as_slice(),
                None => self
                    .epochs
                    .get(epoch_key(id, held.attempt, stored))?
                    .is_some_and(|b| b.as_ref() == bytes.as_slice()),
            };
            return if same {
                Ok(None)
            } else {
                Err(bad(format!(
                    "epoch: {} is already stored, with other values",
                    report.epoch
                )))
            };
        }
        if report.epoch != stored + 1 {
            return Err(bad(format!(
                "epoch: {}, expected {} (epochs are reported in order from 1; {stored} \
                 stored)",
                report.epoch,
                stored + 1
            )));
        }
        if report.epoch > held.epochs {
            return Err(bad(format!(
                "epoch: {}, but the trial has {} epochs",
                report.epoch, held.epochs
            )));
        }
        check_epoch_values(report, held.layers as usize)?;
        Ok(Some((epoch_key(id, held.attempt, report.epoch), bytes)))
    }

    /// Finishes a leased trial: `SUCCEEDED`, or `DIVERGED` when the outcome says so,
    /// with its result. The outcome is required and must match the stored epochs
    /// (completed: all the trial's epochs; diverged in epoch n: n − 1 of them, the
    /// diverged one is not reported), as must `result.epochs`. Idempotent: completing
    /// again with the lease that finished it answers the same state and changes
    /// nothing. The first finished trial of a sweep sets the sweep's dataset
    /// fingerprint.
    pub fn complete(&self, lease: &LeaseRef, result: &TrialResult) -> Result<TrialState, Error> {
        self.write(|| {
            let mut index = self.lock();
            let id = (lease.sweep_id, lease.index);
            let trial = self.trial(id)?;
            let finished = matches!(trial.state(), TrialState::Succeeded | TrialState::Diverged);
            if finished && trial.lease_id == lease.lease_id {
                if trial.worker_id != lease.worker_id {
                    return Err(Error::NotLeaseHolder {
                        sweep: id.0,
                        index: id.1,
                        caller: lease.worker_id,
                    });
                }
                return Ok(trial.state());
            }
            check_holder(&trial, lease)?;
            let Some(outcome) = result.outcome.as_ref().and_then(|o| o.kind.as_ref()) else {
                return Err(bad(
                    "result.outcome: missing (completed, or diverged in an epoch)".into(),
                ));
            };
            let config = config_of(&trial)?;
            let (stored, _) = self.last_epoch(id, trial.attempt)?;
            let target = match *outcome {
                outcome::Kind::Completed(_) => {
                    if stored != config.epochs || result.epochs != config.epochs {
                        return Err(bad(format!(
                            "result: completed after {} epochs, but the trial has {} and {stored} \
                             are stored",
                            result.epochs, config.epochs
                        )));
                    }
                    TrialState::Succeeded
                }
                outcome::Kind::Diverged(d) => {
                    if d.epoch == 0 || d.epoch > config.epochs {
                        return Err(bad(format!(
                            "result.outcome: diverged in epoch {}, but the trial has epochs 1 to {}",
                            d.epoch, config.epochs
                        )));
                    }
                    if stored != d.epoch - 1 || result.epochs != stored {
                        return Err(bad(format!(
                            "result: diverged in epoch {} after {} epochs, but {stored} are \
                             stored (expected {})",
                            d.epoch,
                            result.epochs,
                            d.epoch - 1
                        )));
                    }
                    TrialState::Diverged
                }
            };
            check_result_values(result)?;
            let picks = self.picks(id, trial.attempt)?;
            // Only the first finished trial of a sweep reads and writes the sweep record.
            let known = index
                .sweeps
                .get(&id.0)
                .is_some_and(|s| !s.fingerprint.is_empty());
            let fingerprint = untx(
                (&self.sweeps, &self.trials, &self.summaries, &self.counts).transaction(
                |(sweeps, trials, summaries, counts)| {
                    let key = trial_key(id);
                    let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                        return abort(Error::NoTrial(id.0, id.1));
                    };
                    if !holds(&trial, lease) {
                        return abort(stale(&trial, lease));
                    }
                    let was = trial.state();
                    trial.set_state(target);
                    trial.lease_deadline_unix_ms = 0;
                    trial.error.clear();
                    trial.result = Some(result.clone());
                    tx_trial(trials, summaries, &trial, Some(&picks))?;
                    tx_counts(counts, id.0, &delta(was, target))?;
                    let mut fingerprint = None;
                    if !known && !result.dataset_fingerprint.is_empty() {
                        let sweep_key = id.0.to_be_bytes();
                        if let Some(mut sweep) = tx_get::<Sweep>(sweeps, &sweep_key)?
                            && sweep.dataset_fingerprint.is_empty()
                        {
                            sweep.dataset_fingerprint = result.dataset_fingerprint.clone();
                            tx_put(sweeps, &sweep_key, &sweep)?;
                            fingerprint = Some(sweep.dataset_fingerprint);
                        }
                    }
                    Ok(fingerprint)
                },
            ))?;
            index.release(&id);
            if let Some(fingerprint) = fingerprint {
                index.sweeps.entry(id.0).or_default().fingerprint = fingerprint;
            }
            Ok(target)
        })
    }

    /// Whether any trial is pending (for "retry after" answers).
    pub fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// The number of leases currently held.
    pub fn leased_count(&self) -> usize {
        self.lock().leased.len()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.failure().is_some() {
            // sled flushes when its last handle drops, and after a failed write that
            // flush waits forever: the handles are kept (the process is exiting).
            std::mem::forget(self.db.clone());
            for tree in [&self.sweeps, &self.trials, &self.epochs, &self.workers] {
                std::mem::forget(tree.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::{
        Completed, Diverged, GradCheck, LayerDiagnostics, LayerGradCheck, Outcome,
    };
    use gradsweep_spec::SweepSpec;
    use std::sync::Arc;

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("gradsweep-store-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const POLICY: LeasePolicy = LeasePolicy {
        ttl_ms: 1000,
        max_attempts: 2,
        max_lost: 3,
    };

    /// Four trials of two epochs, one hidden layer (two Linear layers).
    const SPEC: &str = "name = \"t\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nhidden = [8]\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

    fn open(dir: &TempDir) -> Store {
        Store::open_at(&dir.0, POLICY, 0).unwrap()
    }

    fn submit(store: &Store) -> Sweep {
        submit_spec(store, SPEC)
    }

    fn submit_spec(store: &Store, text: &str) -> Sweep {
        let spec = SweepSpec::from_toml_str(text).unwrap();
        let trials = spec.expand(100_000).unwrap();
        store
            .submit(
                &NewSweep {
                    name: &spec.name,
                    spec_toml: text,
                    axes: &spec.axes,
                    seeds: &spec.seeds,
                    trials: &trials,
                },
                0,
            )
            .unwrap()
    }

    fn completed(fingerprint: &str) -> TrialResult {
        TrialResult {
            outcome: Some(Outcome {
                kind: Some(outcome::Kind::Completed(Completed {})),
            }),
            dataset_fingerprint: fingerprint.into(),
            epochs: 2,
            ..TrialResult::default()
        }
    }

    fn diverged(epoch: u32) -> TrialResult {
        TrialResult {
            outcome: Some(Outcome {
                kind: Some(outcome::Kind::Diverged(Diverged { epoch })),
            }),
            epochs: epoch - 1,
            ..TrialResult::default()
        }
    }

    fn lease_ref(l: &TrialLease, worker: u64) -> LeaseRef {
        LeaseRef {
            sweep_id: l.sweep_id,
            index: l.index,
            lease_id: l.lease_id,
            worker_id: worker,
        }
    }

    fn epoch(n: u32, loss: f64) -> EpochReport {
        EpochReport {
            epoch: n,
            train_loss: loss,
            ..EpochReport::default()
        }
    }

    /// Reports both epochs and completes.
    fn finish(store: &Store, l: &LeaseRef, fingerprint: &str) -> TrialState {
        store.report_epoch(l, &epoch(1, 2.0)).unwrap();
        store.report_epoch(l, &epoch(2, 1.0)).unwrap();
        store.complete(l, &completed(fingerprint)).unwrap()
    }

    fn bad_request(r: Result<impl std::fmt::Debug, Error>) -> String {
        match r {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn submit_stores_pending_trials_in_order() {
        let dir = TempDir::new("submit");
        let store = open(&dir);
        let sweep = submit(&store);
        assert_eq!(sweep.trial_count, 4);
        assert_eq!(sweep.state(), SweepState::Running);
        assert_eq!(sweep.counts.unwrap().pending, 4);
        assert_eq!(sweep.axes[0].labels, ["relu", "tanh"]);
        let trials = store.trials_of(sweep.id).unwrap();
        assert_eq!(trials.len(), 4);
        for (i, t) in trials.iter().enumerate() {
            assert_eq!(t.index, i as u32);
            assert_eq!(t.state(), TrialState::Pending);
            assert_eq!(t.key.len(), 64);
            assert!(
                t.config_toml
                    .contains("dataset = \"synthetic:glyphs-tiny\"")
            );
        }
        assert_eq!(trials[1].seed, 1);
        assert_eq!(trials[2].choice, [1]);
        assert_eq!(store.sweeps().unwrap().len(), 1);
        assert!(matches!(store.sweep(999), Err(Error::NoSweep(999))));
    }

    #[test]
    fn lease_report_complete() {
        let dir = TempDir::new("complete");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w1", "cpu", 8, 0).unwrap();
        assert!(matches!(
            store.lease(12345, 1, 0),
            Err(Error::NoWorker(12345))
        ));
        let leases = store.lease(w.id, 3, 10).unwrap();
        assert_eq!(leases.len(), 3);
        assert_eq!(
            leases.iter().map(|l| l.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let l = &leases[0];
        assert_eq!(l.attempt, 0);
        assert_eq!(l.deadline_unix_ms, 1010);
        assert!(l.config_toml.contains("activation = \"relu\""));
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(t.state(), TrialState::Leased);
        assert_eq!(t.worker_id, w.id);
        assert_eq!(t.lease_id, l.lease_id);
        assert_eq!(store.leased_count(), 3);

        let r = lease_ref(l, w.id);
        assert_eq!(finish(&store, &r, "abc"), TrialState::Succeeded);
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(t.state(), TrialState::Succeeded);
        assert_eq!(t.result.unwrap().dataset_fingerprint, "abc");
        let epochs = store.epochs((sweep.id, 0)).unwrap();
        assert_eq!(epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2]);
        let s = store.sweep(sweep.id).unwrap();
        assert_eq!(s.dataset_fingerprint, "abc");
        let counts = s.counts.unwrap();
        assert_eq!((counts.succeeded, counts.leased, counts.pending), (1, 2, 1));
        // Later leases carry the sweep's fingerprint.
        let next = store.lease(w.id, 5, 20).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].dataset_fingerprint, "abc");
        assert!(store.lease(w.id, 5, 20).unwrap().is_empty());
        assert!(!store.has_pending());

        // Diverged is a result: in epoch 2, after epoch 1 was reported.
        let d = lease_ref(&leases[1], w.id);
        store.report_epoch(&d, &epoch(1, 3.0)).unwrap();
        assert_eq!(
            store.complete(&d, &diverged(2)).unwrap(),
            TrialState::Diverged
        );
        // Diverged in the first epoch: nothing reported.
        let d = lease_ref(&leases[2], w.id);
        assert_eq!(
            store.complete(&d, &diverged(1)).unwrap(),
            TrialState::Diverged
        );
    }

    #[test]
    fn lease_ids_are_random_and_not_sequential() {
        let dir = TempDir::new("ids");
        let store = open(&dir);
        submit(&store);
        let w = store.register("w", "cpu", 8, 0).unwrap();
        let ids: Vec<u64> = store
            .lease(w.id, 4, 0)
            .unwrap()
            .iter()
            .map(|l| l.lease_id)
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|&id| id != 0));
        // Sequential ids (as sled's generate_id gave) differ by small steps; random
        // 64-bit ones almost surely not.
        for pair in ids.windows(2) {
            assert!(pair[0].abs_diff(pair[1]) > 1 << 20, "{ids:?}");
        }
    }

    #[test]
    fn complete_is_idempotent() {
        let dir = TempDir::new("idem");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        finish(&store, &l, "first");
        let before = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(
            store.complete(&l, &completed("second")).unwrap(),
            TrialState::Succeeded
        );
        assert_eq!(store.trial((sweep.id, 0)).unwrap(), before);
        // But a fail or an epoch after completion is stale.
        assert!(matches!(
            store.fail(&l, FailKind::Error, "x", 0),
            Err(Error::StaleLease { .. })
        ));
        assert!(matches!(
            store.report_epoch(&l, &epoch(3, 0.0)),
            Err(Error::StaleLease { .. })
        ));
    }

    #[test]
    fn errors_count_as_failures_and_fail_the_trial_at_max_attempts() {
        let dir = TempDir::new("fail");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let first = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        store.report_epoch(&first, &epoch(1, 5.0)).unwrap();
        assert_eq!(
            store
                .fail(&first, FailKind::Error, "out of memory", 7)
                .unwrap(),
            TrialState::Pending
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!((t.state(), t.attempt), (TrialState::Pending, 1));
        assert_eq!((t.failures, t.lost), (1, 0));
        assert_eq!(t.error, "out of memory");
        assert_eq!(t.history.len(), 1);
        let h = &t.history[0];
        assert_eq!(
            (h.attempt, h.kind(), h.worker_id, h.worker_name.as_str()),
            (0, AttemptEndKind::Error, w.id, "w")
        );
        assert_eq!((h.reason.as_str(), h.ended_unix_ms), ("out of memory", 7));
        // The requeued trial is leased again first, as attempt 1, with a new lease id.
        let second = store.lease(w.id, 1, 0).unwrap().remove(0);
        assert_eq!((second.index, second.attempt), (0, 1));
        assert_ne!(second.lease_id, first.lease_id);
        // The first attempt's epochs do not count.
        assert!(store.epochs((sweep.id, 0)).unwrap().is_empty());
        // FAIL_KIND_UNSPECIFIED counts as an error.
        assert_eq!(
            store
                .fail(
                    &lease_ref(&second, w.id),
                    FailKind::Unspecified,
                    "out of memory again",
                    8
                )
                .unwrap(),
            TrialState::Failed
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(t.state(), TrialState::Failed);
        assert_eq!(t.failures, 2);
        assert!(t.error.starts_with("out of memory again"), "{}", t.error);
        assert_eq!(t.history.len(), 2);
        assert_eq!(store.sweep(sweep.id).unwrap().counts.unwrap().failed, 1);
    }

    #[test]
    fn lost_leases_do_not_use_attempts_but_are_bounded_by_max_lost() {
        let dir = TempDir::new("lost");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        // One error, then many losses: still pending while lost < max_lost (3), though
        // max_attempts (2) attempts have long been made.
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        store.fail(&l, FailKind::Error, "bad luck", 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        assert_eq!(
            store.fail(&l, FailKind::HandBack, "SIGTERM", 1).unwrap(),
            TrialState::Pending
        );
        let l = lease_ref(&store.lease(w.id, 1, 10).unwrap()[0], w.id);
        assert_eq!(l.index, 0);
        // The worker dies: its lease expires.
        assert_eq!(store.expire(10 + 1001).unwrap(), 1);
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(
            (t.state(), t.attempt, t.failures, t.lost),
            (TrialState::Pending, 3, 1, 2)
        );
        let kinds: Vec<_> = t.history.iter().map(|h| h.kind()).collect();
        assert_eq!(
            kinds,
            [
                AttemptEndKind::Error,
                AttemptEndKind::HandedBack,
                AttemptEndKind::Expired
            ]
        );
        assert!(
            t.history[2].reason.contains("expired"),
            "{}",
            t.history[2].reason
        );
        let l = lease_ref(&store.lease(w.id, 1, 2000).unwrap()[0], w.id);
        assert_eq!(
            (l.index, store.trial((sweep.id, 0)).unwrap().attempt),
            (0, 3)
        );
        assert_eq!(
            store
                .fail(&l, FailKind::DatasetMismatch, "fingerprint differs", 2001)
                .unwrap(),
            TrialState::Failed
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!((t.failures, t.lost), (1, 3));
        assert!(t.error.contains("--max-lost"), "{}", t.error);
        assert_eq!(t.history[3].kind(), AttemptEndKind::DatasetMismatch);
    }

    #[test]
    fn retry_requeues_failed_and_optionally_diverged_trials() {
        let dir = TempDir::new("retry");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 4, 0).unwrap();
        let leases = store.lease(w.id, 4, 0).unwrap();
        // 0 fails twice (FAILED), 1 diverges, 2 succeeds, 3 stays leased.
        store
            .fail(&lease_ref(&leases[0], w.id), FailKind::Error, "e1", 0)
            .unwrap();
        store
            .complete(&lease_ref(&leases[1], w.id), &diverged(1))
            .unwrap();
        finish(&store, &lease_ref(&leases[2], w.id), "fp");
        let again = store.lease(w.id, 1, 0).unwrap().remove(0);
        assert_eq!(again.index, 0);
        store
            .fail(&lease_ref(&again, w.id), FailKind::Error, "e2", 0)
            .unwrap();
        let counts = store.sweep(sweep.id).unwrap().counts.unwrap();
        assert_eq!(
            (counts.failed, counts.diverged, counts.succeeded),
            (1, 1, 1)
        );

        let (s, n) = store.retry(sweep.id, false, 50).unwrap();
        assert_eq!(n, 1);
        let counts = s.counts.unwrap();
        assert_eq!((counts.failed, counts.pending, counts.diverged), (0, 1, 1));
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(
            (t.state(), t.attempt, t.failures, t.lost),
            (TrialState::Pending, 2, 0, 0)
        );
        let last = t.history.last().unwrap();
        assert_eq!(
            (last.kind(), last.attempt, last.ended_unix_ms),
            (AttemptEndKind::Retried, 1, 50)
        );
        assert!(last.reason.contains("e2"), "{}", last.reason);
        // It leases again, as a new attempt, and has its full two errors again.
        let l = store.lease(w.id, 1, 60).unwrap().remove(0);
        assert_eq!((l.index, l.attempt), (0, 2));
        assert_eq!(
            store
                .fail(&lease_ref(&l, w.id), FailKind::Error, "e3", 0)
                .unwrap(),
            TrialState::Pending
        );

        let (s, n) = store.retry(sweep.id, true, 70).unwrap();
        assert_eq!(n, 1);
        let t = store.trial((sweep.id, 1)).unwrap();
        assert_eq!(
            (t.state(), t.attempt, t.result),
            (TrialState::Pending, 1, None)
        );
        assert_eq!(s.counts.unwrap().diverged, 0);
        assert_eq!(
            store.trial((sweep.id, 2)).unwrap().state(),
            TrialState::Succeeded
        );
        assert!(matches!(
            store.retry(999, false, 0),
            Err(Error::NoSweep(999))
        ));
        store.cancel(sweep.id).unwrap();
        bad_request(store.retry(sweep.id, false, 0));
    }

    #[test]
    fn expired_leases_are_requeued_and_stale_calls_refused() {
        let dir = TempDir::new("expire");
        let store = open(&dir);
        let sweep = submit(&store);
        let a = store.register("a", "cpu", 1, 0).unwrap();
        let b = store.register("b", "cpu", 1, 0).unwrap();
        let old = lease_ref(&store.lease(a.id, 1, 0).unwrap()[0], a.id);
        store.report_epoch(&old, &epoch(1, 3.0)).unwrap();
        // A heartbeat renews it.
        let hb = store.heartbeat(a.id, &[old], 900).unwrap();
        assert_eq!(hb.renewed, [old]);
        assert_eq!(store.expire(1500).unwrap(), 0);
        assert_eq!(store.expire(1901).unwrap(), 1);
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(
            (t.state(), t.attempt, t.lost, t.failures),
            (TrialState::Pending, 1, 1, 0)
        );
        assert!(t.error.contains("expired"), "{}", t.error);
        let new = lease_ref(&store.lease(b.id, 1, 2000).unwrap()[0], b.id);
        assert_eq!(new.index, 0);

        // The presumed-dead worker comes back: everything it says is refused.
        let before = store.trial((sweep.id, 0)).unwrap();
        assert!(matches!(
            store.report_epoch(&old, &epoch(2, 9.0)),
            Err(Error::StaleLease { .. })
        ));
        assert!(matches!(
            store.complete(&old, &completed("zzz")),
            Err(Error::StaleLease { .. })
        ));
        assert!(matches!(
            store.fail(&old, FailKind::Error, "x", 0),
            Err(Error::StaleLease { .. })
        ));
        let hb = store.heartbeat(a.id, &[old], 2100).unwrap();
        assert!(hb.renewed.is_empty());
        assert_eq!(hb.revoked[0].reason(), RevokeReason::Expired);
        assert_eq!(store.trial((sweep.id, 0)).unwrap(), before);
        assert!(store.epochs((sweep.id, 0)).unwrap().is_empty());
        assert_eq!(store.sweep(sweep.id).unwrap().dataset_fingerprint, "");

        // The new lease still works.
        finish(&store, &new, "fp");
        let epochs = store.epochs((sweep.id, 0)).unwrap();
        assert_eq!(epochs.len(), 2);
        assert_eq!(epochs[1].train_loss, 1.0);
    }

    #[test]
    fn another_workers_calls_are_refused_and_change_nothing() {
        let dir = TempDir::new("owner");
        let store = open(&dir);
        let sweep = submit(&store);
        let a = store.register("a", "cpu", 1, 0).unwrap();
        let b = store.register("b", "cpu", 1, 0).unwrap();
        let mine = lease_ref(&store.lease(a.id, 1, 0).unwrap()[0], a.id);
        store.report_epoch(&mine, &epoch(1, 3.0)).unwrap();
        let before = store.trial((sweep.id, 0)).unwrap();
        // B knows A's lease id (say it was leaked): still refused.
        let forged = LeaseRef {
            worker_id: b.id,
            ..mine
        };
        let refused = |r: Result<_, Error>| matches!(r, Err(Error::NotLeaseHolder { .. }));
        assert!(refused(store.heartbeat(b.id, &[mine], 900).map(|_| ())));
        assert!(refused(store.heartbeat(b.id, &[forged], 900).map(|_| ())));
        assert!(refused(store.report_epoch(&forged, &epoch(2, 1.0))));
        assert!(refused(
            store.complete(&forged, &completed("forged")).map(|_| ())
        ));
        assert!(refused(
            store.fail(&forged, FailKind::Error, "x", 0).map(|_| ())
        ));
        // A worker that does not say who it is (worker id 0) is nobody's.
        let anonymous = LeaseRef {
            worker_id: 0,
            ..mine
        };
        assert!(refused(store.report_epoch(&anonymous, &epoch(2, 1.0))));
        assert_eq!(store.trial((sweep.id, 0)).unwrap(), before);
        assert_eq!(store.epochs((sweep.id, 0)).unwrap().len(), 1);
        // B's heartbeat did not renew A's lease: it expires on A's deadline.
        assert_eq!(store.expire(1001).unwrap(), 1);
        // And once finished by A, B cannot replay the completion either.
        let mine = lease_ref(&store.lease(a.id, 1, 1001).unwrap()[0], a.id);
        finish(&store, &mine, "fp");
        let forged = LeaseRef {
            worker_id: b.id,
            ..mine
        };
        assert!(refused(
            store.complete(&forged, &completed("fp")).map(|_| ())
        ));
    }

    #[test]
    fn leases_are_capped_at_the_workers_free_slots() {
        let dir = TempDir::new("slots");
        let store = open(&dir);
        submit(&store);
        let w = store.register("w", "cpu", 2, 0).unwrap();
        let first = store.lease(w.id, 64, 0).unwrap();
        assert_eq!(first.len(), 2);
        assert!(store.lease(w.id, 64, 0).unwrap().is_empty());
        store
            .fail(&lease_ref(&first[0], w.id), FailKind::HandBack, "x", 0)
            .unwrap();
        assert_eq!(store.lease(w.id, 64, 0).unwrap().len(), 1);
        assert!(store.lease(w.id, 64, 0).unwrap().is_empty());
    }

    #[test]
    fn register_refuses_absurd_names_and_slots() {
        let dir = TempDir::new("register");
        let store = open(&dir);
        let long = "x".repeat(MAX_WORKER_TEXT + 1);
        assert_eq!(
            bad_request(store.register(&long, "cpu", 1, 0)),
            "name: 257 bytes, the limit is 256"
        );
        assert_eq!(
            bad_request(store.register("w", &long, 1, 0)),
            "device: 257 bytes, the limit is 256"
        );
        assert_eq!(
            bad_request(store.register("w", "cpu", 0, 0)),
            "slots: 0, must be 1 to 1024"
        );
        assert_eq!(
            bad_request(store.register("w", "cpu", 1025, 0)),
            "slots: 1025, must be 1 to 1024"
        );
        // The first id sled gives is 0, which is what a request naming no worker says:
        // never a worker's id.
        let w = store.register(&long[..256], "cpu", 1024, 0).unwrap();
        assert_ne!(w.id, 0);
    }

    #[test]
    fn epoch_reports_are_checked_before_anything_is_stored() {
        let dir = TempDir::new("reports");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        let layer = |dead: Option<f64>| LayerDiagnostics {
            layer: "linear1".into(),
            dead_fraction: dead,
            ..LayerDiagnostics::default()
        };
        let with = |f: &dyn Fn(&mut EpochReport)| {
            let mut r = epoch(1, 1.0);
            f(&mut r);
            r
        };
        let cases: Vec<(EpochReport, &str)> = vec![
            (epoch(0, 1.0), "epoch: 0, expected 1"),
            (epoch(2, 1.0), "epoch: 2, expected 1"),
            (epoch(1_000_000, 1.0), "epoch: 1000000, expected 1"),
            (epoch(1, f64::NAN), "train_loss: NaN is not in"),
            (epoch(1, f64::INFINITY), "train_loss: inf is not in"),
            (epoch(1, -1.0), "train_loss: -1 is not in"),
            (
                with(&|r| r.test_accuracy = 7.5),
                "test_accuracy: 7.5 is not in [0, 1]",
            ),
            (with(&|r| r.val_accuracy = f64::NAN), "val_accuracy: NaN"),
            (with(&|r| r.train_accuracy = -0.1), "train_accuracy: -0.1"),
            (with(&|r| r.val_loss = -2.0), "val_loss: -2 is negative"),
            (with(&|r| r.penalty = -1.0), "penalty: -1 is negative"),
            (with(&|r| r.seconds = f64::NAN), "seconds: NaN"),
            (
                with(&|r| r.layers = vec![layer(None); 3]),
                "layers: 3 layer diagnostics, the trial's net has 2 Linear layers",
            ),
            (
                with(&|r| r.layers = vec![layer(Some(1.5)), layer(None)]),
                "layers[0].dead_fraction: 1.5 is not in [0, 1]",
            ),
            (
                with(&|r| {
                    r.layers = vec![layer(None), layer(None)];
                    r.layers[1].grad_norm = -1.0;
                }),
                "layers[1].grad_norm: -1 is negative",
            ),
        ];
        for (report, expected) in cases {
            let message = bad_request(store.report_epoch(&l, &report));
            assert!(message.starts_with(expected), "{message} ≠ {expected}…");
        }
        assert!(store.epochs((sweep.id, 0)).unwrap().is_empty());

        // A blown-up last step leaves the evaluation losses and the statistics NaN:
        // storable (the next epoch diverges).
        let first = with(&|r| {
            r.val_loss = f64::NAN;
            r.test_loss = f64::INFINITY;
            r.layers = vec![layer(Some(0.25)), layer(None)];
            r.layers[0].weight_mean = f64::NAN;
        });
        store.report_epoch(&l, &first).unwrap();
        // An exact repeat (a retry after UNAVAILABLE) is a no-op; a different one is not.
        store.report_epoch(&l, &first).unwrap();
        let message = bad_request(store.report_epoch(&l, &epoch(1, 0.5)));
        assert!(message.contains("already stored"), "{message}");
        store.report_epoch(&l, &epoch(2, 0.5)).unwrap();
        let message = bad_request(store.report_epoch(&l, &epoch(3, 0.5)));
        assert!(
            message.starts_with("epoch: 3, but the trial has 2 epochs"),
            "{message}"
        );
        assert_eq!(store.epochs((sweep.id, 0)).unwrap().len(), 2);
    }

    #[test]
    fn completions_must_match_the_stored_epochs() {
        let dir = TempDir::new("outcomes");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        store.report_epoch(&l, &epoch(1, 1.0)).unwrap();
        let no_outcome = TrialResult {
            epochs: 1,
            ..TrialResult::default()
        };
        assert!(
            bad_request(store.complete(&l, &no_outcome)).starts_with("result.outcome: missing")
        );
        // Completed with 1 of 2 epochs stored.
        assert!(bad_request(store.complete(&l, &completed("fp"))).contains("1 are stored"));
        // Diverged in epoch 1, but epoch 1 is stored; in epoch 3 of 2.
        assert!(bad_request(store.complete(&l, &diverged(1))).contains("expected 0"));
        assert!(bad_request(store.complete(&l, &diverged(3))).contains("epochs 1 to 2"));
        let mut wrong = diverged(2);
        wrong.epochs = 5;
        assert!(bad_request(store.complete(&l, &wrong)).contains("after 5 epochs"));
        store.report_epoch(&l, &epoch(2, 1.0)).unwrap();
        let mut wrong = completed("fp");
        wrong.epochs = 3;
        assert!(bad_request(store.complete(&l, &wrong)).contains("after 3 epochs"));
        let mut nan = completed("fp");
        nan.gradcheck = Some(GradCheck {
            layers: vec![LayerGradCheck {
                max_rel_error: f64::NAN,
                ..LayerGradCheck::default()
            }],
            ..GradCheck::default()
        });
        assert!(
            bad_request(store.complete(&l, &nan))
                .starts_with("result.gradcheck.layers[0].max_rel_error: NaN is not finite")
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(t.state(), TrialState::Leased);
        assert_eq!(
            store.complete(&l, &completed("fp")).unwrap(),
            TrialState::Succeeded
        );
    }

    #[test]
    fn cancel_revokes_leases() {
        let dir = TempDir::new("cancel");
        let store = open(&dir);
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 2, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        let done = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
        finish(&store, &done, "");
        let s = store.cancel(sweep.id).unwrap();
        assert_eq!(s.state(), SweepState::Cancelled);
        let counts = s.counts.unwrap();
        assert_eq!((counts.cancelled, counts.succeeded), (3, 1));
        let hb = store.heartbeat(w.id, &[l], 10).unwrap();
        assert_eq!(hb.revoked[0].reason(), RevokeReason::Cancelled);
        assert!(store.lease(w.id, 10, 10).unwrap().is_empty());
        assert!(matches!(
            store.complete(&l, &completed("")),
            Err(Error::StaleLease { .. })
        ));
    }

    /// Opens the database again once the previous handles are gone: sled's background
    /// flusher keeps the file lock for a moment after the last handle is dropped.
    fn reopen(dir: &TempDir, now_ms: u64) -> Store {
        let started = std::time::Instant::now();
        loop {
            match Store::open_at(&dir.0, POLICY, now_ms) {
                Err(Error::Locked(_)) if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn reopen_keeps_everything_and_gives_leases_a_fresh_deadline() {
        let dir = TempDir::new("reopen");
        let (sweep, w, leased, finished) = {
            let store = open(&dir);
            let sweep = submit(&store);
            let w = store.register("w", "cpu", 4, 0).unwrap();
            let finished = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
            finish(&store, &finished, "fp");
            let leased = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
            store.flush_blocking().unwrap();
            (sweep, w, leased, finished)
        };
        // Reopened long after the lease's deadline (1000): the outage costs nothing.
        let store = reopen(&dir, 50_000);
        let s = store.sweep(sweep.id).unwrap();
        let counts = s.counts.unwrap();
        assert_eq!((counts.succeeded, counts.leased, counts.pending), (1, 1, 2));
        assert_eq!(s.dataset_fingerprint, "fp");
        assert_eq!(store.epochs((sweep.id, finished.index)).unwrap().len(), 2);
        assert_eq!(store.worker(w.id).unwrap().name, "w");
        let t = store.trial((sweep.id, leased.index)).unwrap();
        assert_eq!(t.lease_deadline_unix_ms, 51_000);
        assert_eq!(store.expire(50_500).unwrap(), 0);
        store.report_epoch(&leased, &epoch(1, 2.0)).unwrap();
        // …then, if its worker never comes back, it is requeued as lost (not failed),
        // in its place in the lease order.
        assert_eq!(store.expire(51_001).unwrap(), 1);
        let t = store.trial((sweep.id, leased.index)).unwrap();
        assert_eq!((t.failures, t.lost), (0, 1));
        let next = store.lease(w.id, 10, 51_001).unwrap();
        let indices: Vec<u32> = next.iter().map(|l| l.index).collect();
        assert_eq!(indices, [1, 2, 3]);
        assert!(next.iter().all(|l| l.lease_id != leased.lease_id));
        assert_eq!(next[0].attempt, 1);
        assert_eq!(next[0].dataset_fingerprint, "fp");
    }

    #[test]
    fn records_from_before_failures_and_history_still_open() {
        // A database written before trials had `failures`, `lost` and `history`: the
        // same fields 1–13, nothing in 14–16.
        let dir = TempDir::new("old");
        {
            let db = sled::open(&dir.0).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &1u32.to_be_bytes())
                .unwrap();
            let sweep = Sweep {
                id: 5,
                name: "old".into(),
                spec_toml: SPEC.into(),
                state: SweepState::Running as i32,
                trial_count: 2,
                ..Sweep::default()
            };
            db.open_tree("sweeps")
                .unwrap()
                .insert(5u64.to_be_bytes(), sweep.encode_to_vec())
                .unwrap();
            let trials = db.open_tree("trials").unwrap();
            let spec = SweepSpec::from_toml_str(SPEC).unwrap();
            let expanded = spec.expand(100).unwrap();
            for (i, state) in [(0u32, TrialState::Leased), (1, TrialState::Failed)] {
                let t = Trial {
                    sweep_id: 5,
                    index: i,
                    key: expanded[i as usize].key.clone(),
                    config_toml: expanded[i as usize].toml.clone(),
                    state: state as i32,
                    attempt: 2,
                    worker_id: 77,
                    lease_id: 0x1234,
                    lease_deadline_unix_ms: 10,
                    error: "old error".into(),
                    ..Trial::default()
                };
                let bytes = t.encode_to_vec();
                // Fields 14–16 are absent from the encoding.
                assert_eq!(bytes, {
                    let mut old = t.clone();
                    old.history.clear();
                    old.encode_to_vec()
                });
                trials.insert(trial_key((5, i)), bytes).unwrap();
            }
            db.flush().unwrap();
        }
        let store = reopen(&dir, 100);
        let t = store.trial((5, 0)).unwrap();
        assert_eq!((t.failures, t.lost, t.history.len()), (0, 0, 0));
        assert_eq!(t.lease_deadline_unix_ms, 1100);
        assert_eq!(store.expire(1101).unwrap(), 1);
        let t = store.trial((5, 0)).unwrap();
        assert_eq!((t.state(), t.attempt, t.lost), (TrialState::Pending, 3, 1));
        let (_, n) = store.retry(5, false, 0).unwrap();
        assert_eq!(n, 1);
        assert_eq!(store.trial((5, 1)).unwrap().state(), TrialState::Pending);
    }

    /// The database itself, once the store that had it open has let go of its lock.
    fn raw_open(dir: &TempDir) -> sled::Db {
        let started = std::time::Instant::now();
        loop {
            match sled::open(&dir.0) {
                Ok(db) => return db,
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A spec of 2 × `seeds` trials.
    fn big_spec(seeds: usize) -> String {
        let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
        format!(
            "name = \"big\"\ndataset = \"synthetic:glyphs-tiny\"\nepochs = 2\nhidden = [8]\n\
             seeds = [{}]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n",
            seeds.join(", ")
        )
    }

    fn states(store: &Store, sweep: u64) -> Vec<TrialState> {
        store
            .trials_of(sweep)
            .unwrap()
            .iter()
            .map(Trial::state)
            .collect()
    }

    #[test]
    fn sweeps_of_several_write_chunks_are_submitted_cancelled_and_retried_whole() {
        let dir = TempDir::new("chunks");
        let store = open(&dir);
        let n = 2 * 1300;
        assert!(n > 2 * WRITE_CHUNK);
        let sweep = submit_spec(&store, &big_spec(1300));
        assert_eq!(sweep.counts.unwrap().pending, n as u32);
        assert_eq!(store.trials_of(sweep.id).unwrap().len(), n);
        assert_eq!(store.summaries(sweep.id).count(), n);
        // Every trial is leasable, in order.
        let w = store.register("w", "cpu", 1024, 0).unwrap();
        let leased = store.lease(w.id, 1024, 0).unwrap();
        assert_eq!(leased.len(), 1024);
        assert_eq!(leased.last().unwrap().index, 1023);
        // One error each fails them (max_attempts 2: twice), then retry requeues all.
        for attempt in 0..2 {
            if attempt == 1 {
                let again = store.lease(w.id, 1024, 0).unwrap();
                assert_eq!(again.len(), 1024);
                for l in &again {
                    store
                        .fail(&lease_ref(l, w.id), FailKind::Error, "boom", 0)
                        .unwrap();
                }
            } else {
                for l in &leased {
                    store
                        .fail(&lease_ref(l, w.id), FailKind::Error, "boom", 0)
                        .unwrap();
                }
            }
        }
        let c = store.sweep(sweep.id).unwrap().counts.unwrap();
        assert_eq!((c.pending, c.failed), (n as u32 - 1024, 1024));
        let (after, requeued) = store.retry(sweep.id, false, 0).unwrap();
        assert_eq!(requeued, 1024);
        assert_eq!(after.counts.unwrap().pending, n as u32);
        // Cancel: every trial, leased ones too, and the counts in step.
        store.lease(w.id, 10, 0).unwrap();
        let cancelled = store.cancel(sweep.id).unwrap();
        let c = cancelled.counts.unwrap();
        assert_eq!((c.cancelled, c.pending, c.leased), (n as u32, 0, 0));
        assert!(
            states(&store, sweep.id)
                .iter()
                .all(|&s| s == TrialState::Cancelled)
        );
        assert!(store.lease(w.id, 1, 0).unwrap().is_empty());
    }

    #[test]
    fn the_trials_of_a_submit_that_did_not_finish_are_removed_on_open() {
        let dir = TempDir::new("orphans");
        {
            let store = open(&dir);
            submit(&store);
            store.flush_blocking().unwrap();
        }
        {
            // A submit that stopped after writing trials of sweep 2 (and a stray 9),
            // before the transaction that stores the sweep and advances the counter.
            let db = raw_open(&dir);
            let trials = db.open_tree("trials").unwrap();
            let summaries = db.open_tree("summaries").unwrap();
            for (sweep, index) in [(2u64, 0u32), (2, 1), (2, 7), (9, 0)] {
                let t = Trial {
                    sweep_id: sweep,
                    index,
                    config_toml: "junk".into(),
                    state: TrialState::Pending as i32,
                    ..Trial::default()
                };
                trials
                    .insert(trial_key((sweep, index)), t.encode_to_vec())
                    .unwrap();
                summaries
                    .insert(
                        trial_key((sweep, index)),
                        Summary::of(&t, None).encode_to_vec(),
                    )
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let store = reopen(&dir, 0);
        assert!(store.trials_of(2).unwrap().is_empty());
        assert!(store.trials_of(9).unwrap().is_empty());
        assert_eq!(store.summaries(2).count(), 0);
        // The next sweep is 2, with exactly its own four trials.
        let sweep = submit(&store);
        assert_eq!(sweep.id, 2);
        assert_eq!(store.trials_of(2).unwrap().len(), 4);
        let w = store.register("w", "cpu", 16, 0).unwrap();
        let leased: Vec<(u64, u32)> = store
            .lease(w.id, 16, 0)
            .unwrap()
            .iter()
            .map(|l| (l.sweep_id, l.index))
            .collect();
        assert_eq!(
            leased,
            [
                (1, 0),
                (1, 1),
                (1, 2),
                (1, 3),
                (2, 0),
                (2, 1),
                (2, 2),
                (2, 3)
            ]
        );
    }

    #[test]
    fn a_sweep_being_cancelled_leases_none_of_its_trials() {
        let dir = TempDir::new("cancelling");
        let store = open(&dir);
        let first = submit(&store);
        let second = submit(&store);
        // Between a cancel's chunks: the sweep is flagged, its trials not yet written.
        store.lock().sweeps.get_mut(&first.id).unwrap().cancelled = true;
        let w = store.register("w", "cpu", 16, 0).unwrap();
        let leased = store.lease(w.id, 16, 0).unwrap();
        assert!(leased.iter().all(|l| l.sweep_id == second.id), "{leased:?}");
        assert_eq!(leased.len(), 4);
        // The cancel's chunks then cancel every one of them.
        assert_eq!(store.cancel_open_trials(first.id).unwrap(), 4);
        let c = store.sweep(first.id).unwrap().counts.unwrap();
        assert_eq!((c.cancelled, c.pending), (4, 0));
    }

    #[test]
    fn a_cancel_that_stopped_midway_is_finished_on_open() {
        let dir = TempDir::new("half-cancel");
        let (sweep, held) = {
            let store = open(&dir);
            let sweep = submit(&store);
            let w = store.register("w", "cpu", 1, 0).unwrap();
            let held = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0], w.id);
            store.flush_blocking().unwrap();
            (sweep, held)
        };
        {
            // The cancel wrote the sweep's record, then stopped.
            let db = raw_open(&dir);
            let sweeps = db.open_tree("sweeps").unwrap();
            let mut s: Sweep =
                decode(&sweeps.get(sweep.id.to_be_bytes()).unwrap().unwrap()).unwrap();
            s.set_state(SweepState::Cancelled);
            sweeps
                .insert(sweep.id.to_be_bytes(), s.encode_to_vec())
                .unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&dir, 0);
        let c = store.sweep(sweep.id).unwrap().counts.unwrap();
        assert_eq!((c.cancelled, c.pending, c.leased), (4, 0, 0));
        assert!(
            states(&store, sweep.id)
                .iter()
                .all(|&s| s == TrialState::Cancelled)
        );
        assert!(!store.has_pending());
        let beat = store.heartbeat(held.worker_id, &[held], 0).unwrap();
        assert!(beat.renewed.is_empty());
        assert_eq!(beat.revoked.len(), 1);
    }

    #[test]
    fn sweep_ids_are_1_2_3_across_a_restart() {
        let dir = TempDir::new("ids");
        {
            let store = open(&dir);
            // A worker registered first takes no sweep id (worker ids are sled's).
            store.register("w", "cpu", 1, 0).unwrap();
            assert_eq!(submit(&store).id, 1);
            assert_eq!(submit(&store).id, 2);
            store.flush_blocking().unwrap();
        }
        let store = reopen(&dir, 0);
        store.register("w2", "cpu", 1, 0).unwrap();
        assert_eq!(submit(&store).id, 3);
        let ids: Vec<u64> = store.sweeps().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [3, 2, 1]);
    }

    #[test]
    fn a_database_from_before_the_counter_continues_after_its_largest_sweep() {
        let dir = TempDir::new("ids-old");
        {
            // Ids as sled's generate_id gave them, and no counter in `meta`.
            let db = sled::open(&dir.0).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &1u32.to_be_bytes())
                .unwrap();
            let sweeps = db.open_tree("sweeps").unwrap();
            for id in [2u64, 27, 2_000_000] {
                let sweep = Sweep {
                    id,
                    name: "old".into(),
                    spec_toml: SPEC.into(),
                    ..Sweep::default()
                };
                sweeps
                    .insert(id.to_be_bytes(), sweep.encode_to_vec())
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let store = reopen(&dir, 0);
        assert_eq!(submit(&store).id, 2_000_001);
        assert_eq!(submit(&store).id, 2_000_002);
        assert_eq!(store.sweep(27).unwrap().name, "old");
    }

    #[test]
    fn a_damaged_sweep_id_counter_is_one_line_naming_it() {
        let dir = TempDir::new("ids-bad");
        {
            let db = sled::open(&dir.0).unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert("schema_version", &1u32.to_be_bytes()).unwrap();
            meta.insert("last_sweep_id", &[1u8, 2, 3][..]).unwrap();
            db.flush().unwrap();
        }
        let started = std::time::Instant::now();
        let e = loop {
            match Store::open_at(&dir.0, POLICY, 0) {
                Err(Error::Locked(_)) if started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => break e,
                Ok(_) => panic!("a 3-byte counter was accepted"),
            }
        };
        let line = e.to_string();
        assert!(line.contains("last_sweep_id: 3 bytes"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn a_second_open_names_the_lock_holder() {
        let dir = TempDir::new("locked");
        let _first = open(&dir);
        let e = Store::open(&dir.0, POLICY).err().unwrap();
        assert!(matches!(e, Error::Locked(_)), "{e:?}");
        let line = e.to_string();
        assert!(line.contains("another coordinator holds it"), "{line}");
        assert!(line.contains(&dir.0.display().to_string()), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_all_return() {
        let dir = TempDir::new("flush");
        let store = Arc::new(open(&dir));
        submit(&store);
        let flushes: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.flush().await })
            })
            .collect();
        for f in flushes {
            f.await.unwrap().unwrap();
        }
    }

    #[test]
    fn a_large_sweep_submits_quickly() {
        let dir = TempDir::new("large");
        let store = open(&dir);
        let text = "dataset = \"synthetic:glyphs\"\nseeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n[grid]\nbatch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nepochs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\neval_batch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";
        let start = std::time::Instant::now();
        let spec = SweepSpec::from_toml_str(text).unwrap();
        let trials = spec.expand(100_000).unwrap();
        let sweep = store
            .submit(
                &NewSweep {
                    name: &spec.name,
                    spec_toml: text,
                    axes: &spec.axes,
                    seeds: &spec.seeds,
                    trials: &trials,
                },
                0,
            )
            .unwrap();
        store.flush_blocking().unwrap();
        let took = start.elapsed();
        assert_eq!(sweep.trial_count, 10_000);
        eprintln!("10,000-trial sweep parsed, expanded, stored and flushed in {took:?}");
        assert!(took.as_secs_f64() < 5.0, "{took:?}");
    }

    /// Every sweep's stored counts equal a recount of its trials' states, and every
    /// trial's summary is what its record and epochs give.
    fn assert_derived_consistent(store: &Store) {
        for sweep in store.sweeps().unwrap() {
            let mut recount = TrialCounts::default();
            for t in store.trials_of(sweep.id).unwrap() {
                count(&mut recount, t.state());
                let id = (t.sweep_id, t.index);
                let picks = matches!(t.state(), TrialState::Succeeded | TrialState::Diverged)
                    .then(|| store.picks(id, t.attempt).unwrap());
                assert_eq!(
                    store.summary(id).unwrap(),
                    Summary::of(&t, picks.as_ref()),
                    "summary of trial {id:?}"
                );
            }
            assert_eq!(
                sweep.counts.unwrap(),
                recount,
                "counts of sweep {}",
                sweep.id
            );
        }
    }

    /// Every kind of transition: leases, reports, completion, divergence, errors,
    /// expiry, cancel and retry.
    fn churn(store: &Store) -> (Sweep, Sweep) {
        let a = submit(store);
        let b = submit(store);
        let w = store.register("w", "cpu", 8, 0).unwrap();
        let l: Vec<LeaseRef> = store
            .lease(w.id, 4, 0)
            .unwrap()
            .iter()
            .map(|l| lease_ref(l, w.id))
            .collect();
        assert_eq!(finish(store, &l[0], "fp"), TrialState::Succeeded);
        store.report_epoch(&l[1], &epoch(1, 2.0)).unwrap();
        assert_eq!(
            store.complete(&l[1], &diverged(2)).unwrap(),
            TrialState::Diverged
        );
        store.fail(&l[2], FailKind::Error, "boom", 1).unwrap();
        // l[3] expires.
        assert_eq!(store.expire(5_000).unwrap(), 1);
        let again: Vec<LeaseRef> = store
            .lease(w.id, 4, 5_000)
            .unwrap()
            .iter()
            .map(|l| lease_ref(l, w.id))
            .collect();
        assert!(!again.is_empty());
        store
            .fail(&again[0], FailKind::Error, "boom", 5_001)
            .unwrap();
        store.cancel(b.id).unwrap();
        store.retry(a.id, true, 6_000).unwrap();
        (a, b)
    }

    #[test]
    fn counts_and_summaries_follow_every_transition() {
        let dir = TempDir::new("derived");
        let store = open(&dir);
        let (a, b) = churn(&store);
        assert_derived_consistent(&store);
        let sa = store.sweep(a.id).unwrap();
        assert_eq!(sa.state(), SweepState::Running);
        assert_eq!(
            store.sweep(b.id).unwrap().counts.unwrap().cancelled
                + store.sweep(b.id).unwrap().counts.unwrap().leased,
            4
        );
        // The compact records come in index order.
        let indices: Vec<u32> = store.summaries(a.id).map(|s| s.unwrap().index).collect();
        assert_eq!(indices, [0, 1, 2, 3]);
        assert_eq!(store.summaries(999).count(), 0);
    }

    #[test]
    fn a_database_without_counts_or_summaries_gets_them_on_open() {
        let dir = TempDir::new("migrate");
        let (a, b, before) = {
            let store = open(&dir);
            let (a, b) = churn(&store);
            // A finished trial with a best epoch that is not its last.
            let w = store.register("w2", "cpu", 1, 7_000).unwrap();
            let l = lease_ref(&store.lease(w.id, 1, 7_000).unwrap()[0], w.id);
            let mut e1 = epoch(1, 2.0);
            e1.val_accuracy = 0.75;
            store.report_epoch(&l, &e1).unwrap();
            store.report_epoch(&l, &epoch(2, 1.0)).unwrap();
            store.complete(&l, &completed("fp")).unwrap();
            let before: Vec<Summary> = store
                .summaries(a.id)
                .chain(store.summaries(b.id))
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                before[l.index as usize]
                    .best_val_epoch
                    .as_ref()
                    .unwrap()
                    .epoch,
                1
            );
            store.flush_blocking().unwrap();
            (a, b, before)
        };
        {
            // As a coordinator from before the derived trees left it.
            let db = sled::open(&dir.0).unwrap();
            db.drop_tree("summaries").unwrap();
            db.drop_tree("counts").unwrap();
            db.open_tree("meta").unwrap().remove(DERIVED).unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&dir, 10_000);
        let after: Vec<Summary> = store
            .summaries(a.id)
            .chain(store.summaries(b.id))
            .map(Result::unwrap)
            .collect();
        assert_eq!(after, before);
        assert_derived_consistent(&store);
        assert!(store.sweep(a.id).unwrap().counts.unwrap().succeeded >= 1);
        // Counts that disagree with the trials are recomputed on open.
        drop(store);
        {
            let db = sled::open(&dir.0).unwrap();
            db.open_tree("counts")
                .unwrap()
                .insert(a.id.to_be_bytes(), TrialCounts::default().encode_to_vec())
                .unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&dir, 10_000);
        assert_derived_consistent(&store);
    }

    #[test]
    fn a_batch_of_reports_answers_each_on_its_own() {
        let dir = TempDir::new("batch");
        let store = open(&dir);
        submit(&store);
        let w = store.register("w", "cpu", 2, 0).unwrap();
        let l: Vec<LeaseRef> = store
            .lease(w.id, 2, 0)
            .unwrap()
            .iter()
            .map(|l| lease_ref(l, w.id))
            .collect();
        let stale = LeaseRef {
            lease_id: l[0].lease_id ^ 1,
            ..l[0]
        };
        let other = LeaseRef {
            worker_id: w.id + 1,
            ..l[1]
        };
        let (e1, e2, e3, bad) = (epoch(1, 2.0), epoch(2, 1.0), epoch(3, 1.0), epoch(1, -1.0));
        let outcomes = store.report_epochs(&[
            (l[0], &e1),
            (stale, &e2),
            (l[0], &e2),
            (l[1], &bad),
            (other, &e1),
            (l[0], &e2),
            (l[0], &e3),
            (l[1], &e1),
        ]);
        let kinds: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                Ok(()) => "ok".into(),
                Err(Error::StaleLease { .. }) => "stale".into(),
                Err(Error::NotLeaseHolder { .. }) => "other".into(),
                Err(Error::BadRequest(m)) => m.split(':').next().unwrap().to_owned(),
                Err(e) => panic!("{e}"),
            })
            .collect();
        // A repeat of the epoch just accepted (same values) is taken, as a retry.
        assert_eq!(
            kinds,
            [
                "ok",
                "stale",
                "ok",
                "train_loss",
                "other",
                "ok",
                "epoch",
                "ok"
            ]
        );
        assert_eq!(
            store.epochs((l[0].sweep_id, l[0].index)).unwrap(),
            [e1.clone(), e2.clone()]
        );
        assert_eq!(store.epochs((l[1].sweep_id, l[1].index)).unwrap(), [e1]);
        // The index knows what is stored: the next epochs follow on.
        store.report_epoch(&l[1], &e2).unwrap();
        assert_eq!(
            store.complete(&l[0], &completed("fp")).unwrap(),
            TrialState::Succeeded
        );
        assert_eq!(
            store.complete(&l[1], &completed("fp")).unwrap(),
            TrialState::Succeeded
        );
    }
}
