//! The coordinator's database (sled): sweeps, trials, epoch reports, workers, and the
//! trial state machine.
//!
//! # Trees
//!
//! - `sweeps`: sweep id (u64 BE) → [`Sweep`]
//! - `trials`: sweep id (u64 BE) ‖ index (u32 BE) → [`Trial`]
//! - `epochs`: sweep id ‖ index ‖ attempt (u32 BE) ‖ epoch (u32 BE) → [`EpochReport`]
//! - `workers`: worker id (u64 BE) → [`Worker`]
//! - `meta`: `schema_version` → u32 BE
//!
//! Values are prost-encoded. Ids (sweeps, workers, leases) come from sled's
//! `generate_id`, so they never repeat across restarts. Lease ids also carry the
//! database's random *incarnation* (`meta`, chosen at creation) in their top 24 bits,
//! so that a worker still holding a lease from another database cannot match a lease
//! of this one.
//!
//! # Trial states
//!
//! `PENDING → LEASED(worker, lease_id, deadline, attempt) → SUCCEEDED | DIVERGED |
//! FAILED | CANCELLED`; `LEASED → PENDING` when the lease expires or the worker gives it
//! back, with attempt + 1, or `FAILED` once `max_attempts` attempts have been made.
//! Every transition is one sled transaction. A call naming a lease that is not the
//! trial's current one is refused with [`Error::StaleLease`] and changes nothing.
//! `complete` is idempotent. The epochs of a trial are stored per attempt; only the
//! finishing attempt's are read back ([`Store::epochs`]).
//!
//! The store keeps, beside sled, an in-memory index of the pending trials (in lease
//! order: oldest sweep first, then index) and of the leases' deadlines, rebuilt by
//! [`Store::open`]. All writes go through one mutex: the coordinator is the only writer.
//! Durability is the caller's: call [`Store::flush`] before acknowledging what must
//! survive a crash (a submitted sweep, a completed trial).

use crate::Error;
use gradsweep_proto::{
    EpochReport, LeaseRef, RevokeReason, RevokedLease, Sweep, SweepState, Trial, TrialCounts,
    TrialLease, TrialResult, TrialState, Worker, outcome,
};
use gradsweep_spec::SweepTrial;
use gradsweep_spec::sweep::Axis;
use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

/// The database layout this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A trial's address: sweep id and index.
pub type TrialId = (u64, u32);

/// How leases behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// A lease lapses this long after it was granted or last renewed.
    pub ttl_ms: u64,
    /// Attempts a trial gets before it is `FAILED`.
    pub max_attempts: u32,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            ttl_ms: 30_000,
            max_attempts: 3,
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

/// The in-memory index over the trials tree.
#[derive(Default)]
struct Index {
    /// Pending trials, in lease order.
    pending: BTreeSet<TrialId>,
    /// Leased trials and their deadlines.
    leased: HashMap<TrialId, u64>,
    /// Per sweep: cancelled, and the fingerprint of the data its trials trained on.
    sweeps: HashMap<u64, SweepInfo>,
    /// Registered workers' ids.
    workers: std::collections::HashSet<u64>,
}

#[derive(Default, Clone)]
struct SweepInfo {
    cancelled: bool,
    fingerprint: String,
}

/// The coordinator's database.
pub struct Store {
    db: sled::Db,
    sweeps: sled::Tree,
    trials: sled::Tree,
    epochs: sled::Tree,
    workers: sled::Tree,
    policy: LeasePolicy,
    /// Top 24 bits of every lease id (see the module doc).
    incarnation: u64,
    index: Mutex<Index>,
}

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

fn untx<T>(r: Result<T, TransactionError<Error>>) -> Result<T, Error> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Storage(e),
    })
}

/// Whether `trial` is leased under `lease`.
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

impl Store {
    /// Opens (or creates) the database at `path` and rebuilds the in-memory index.
    /// Leases stored as running stay leased until their deadline passes
    /// ([`Store::expire`]). A database of another schema version is refused.
    pub fn open(path: &Path, policy: LeasePolicy) -> Result<Store, Error> {
        let db = sled::open(path)?;
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
        let incarnation = match meta.get("incarnation")? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            None => {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                let incarnation = (h.finish() & 0xff_ffff).max(1);
                meta.insert("incarnation", &incarnation.to_be_bytes())?;
                incarnation
            }
        };
        let store = Store {
            sweeps: db.open_tree("sweeps")?,
            trials: db.open_tree("trials")?,
            epochs: db.open_tree("epochs")?,
            workers: db.open_tree("workers")?,
            db,
            policy,
            incarnation,
            index: Mutex::new(Index::default()),
        };
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
            index.workers.insert(decode::<Worker>(&v)?.id);
        }
        for entry in store.trials.iter() {
            let (_, v) = entry?;
            let trial: Trial = decode(&v)?;
            let id = (trial.sweep_id, trial.index);
            match trial.state() {
                TrialState::Pending => {
                    index.pending.insert(id);
                }
                TrialState::Leased => {
                    index.leased.insert(id, trial.lease_deadline_unix_ms);
                }
                _ => {}
            }
        }
        *store.index.lock().expect("store index lock") = index;
        Ok(store)
    }

    /// The lease policy in force.
    pub fn policy(&self) -> LeasePolicy {
        self.policy
    }

    /// Returns once every write made before the call is on disk. (sled's own
    /// `flush_async` can wait forever when nothing else writes, so the blocking flush
    /// runs on tokio's blocking pool; sled coalesces concurrent flushes itself, which
    /// measured faster than queueing them behind one lock.)
    pub async fn flush(&self) -> Result<(), Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;
        Ok(())
    }

    /// Writes everything to disk, blocking.
    pub fn flush_blocking(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("store index lock")
    }

    // -----------------------------------------------------------------------------------
    // Sweeps
    // -----------------------------------------------------------------------------------

    /// Stores a sweep and all its trials, `PENDING`, in one transaction.
    pub fn submit(&self, new: &NewSweep<'_>, now_ms: u64) -> Result<Sweep, Error> {
        let mut index = self.lock();
        let id = self.db.generate_id()?;
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
        let records: Vec<([u8; 12], Vec<u8>)> = new
            .trials
            .iter()
            .map(|t| {
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
                (trial_key((id, t.index as u32)), trial.encode_to_vec())
            })
            .collect();
        untx(
            (&self.sweeps, &self.trials).transaction(|(sweeps, trials)| {
                for (k, v) in &records {
                    trials.insert(&k[..], v.as_slice())?;
                }
                tx_put(sweeps, &id.to_be_bytes(), &sweep)?;
                Ok(())
            }),
        )?;
        index.sweeps.insert(id, SweepInfo::default());
        index
            .pending
            .extend((0..new.trials.len() as u32).map(|i| (id, i)));
        drop(index);
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
        let mut counts = TrialCounts::default();
        for trial in self.trials_of(sweep.id)? {
            match trial.state() {
                TrialState::Pending | TrialState::Unspecified => counts.pending += 1,
                TrialState::Leased => counts.leased += 1,
                TrialState::Succeeded => counts.succeeded += 1,
                TrialState::Diverged => counts.diverged += 1,
                TrialState::Failed => counts.failed += 1,
                TrialState::Cancelled => counts.cancelled += 1,
            }
        }
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

    /// Cancels every pending or leased trial of a sweep, and the sweep, in one
    /// transaction. Leased trials' workers learn it at their next heartbeat.
    pub fn cancel(&self, sweep_id: u64) -> Result<Sweep, Error> {
        let mut index = self.lock();
        let bytes = self
            .sweeps
            .get(sweep_id.to_be_bytes())?
            .ok_or(Error::NoSweep(sweep_id))?;
        let mut sweep: Sweep = decode(&bytes)?;
        sweep.set_state(SweepState::Cancelled);
        let mut open = Vec::new();
        for trial in self.trials_of(sweep_id)? {
            if matches!(trial.state(), TrialState::Pending | TrialState::Leased) {
                open.push(trial);
            }
        }
        untx(
            (&self.sweeps, &self.trials).transaction(|(sweeps, trials)| {
                for trial in &open {
                    let mut t = trial.clone();
                    t.set_state(TrialState::Cancelled);
                    t.lease_deadline_unix_ms = 0;
                    tx_put(trials, &trial_key((t.sweep_id, t.index)), &t)?;
                }
                tx_put(sweeps, &sweep_id.to_be_bytes(), &sweep)?;
                Ok(())
            }),
        )?;
        for trial in &open {
            let id = (trial.sweep_id, trial.index);
            index.pending.remove(&id);
            index.leased.remove(&id);
        }
        index.sweeps.entry(sweep_id).or_default().cancelled = true;
        drop(index);
        self.with_counts(sweep)
    }

    // -----------------------------------------------------------------------------------
    // Workers
    // -----------------------------------------------------------------------------------

    /// Registers a worker and returns its record (with a fresh id).
    pub fn register(
        &self,
        name: &str,
        device: &str,
        slots: u32,
        now_ms: u64,
    ) -> Result<Worker, Error> {
        let worker = Worker {
            id: self.db.generate_id()?,
            name: name.to_owned(),
            device: device.to_owned(),
            slots,
            registered_unix_ms: now_ms,
            last_seen_unix_ms: now_ms,
        };
        self.workers
            .insert(worker.id.to_be_bytes(), worker.encode_to_vec())?;
        self.lock().workers.insert(worker.id);
        Ok(worker)
    }

    /// A registered worker.
    pub fn worker(&self, id: u64) -> Result<Worker, Error> {
        let bytes = self
            .workers
            .get(id.to_be_bytes())?
            .ok_or(Error::NoWorker(id))?;
        decode(&bytes)
    }

    // -----------------------------------------------------------------------------------
    // Leases
    // -----------------------------------------------------------------------------------

    /// Leases up to `max` pending trials to `worker_id` (first requeuing expired leases).
    /// Each lease is one transaction: `PENDING → LEASED(worker, new lease id, now + ttl)`.
    pub fn lease(&self, worker_id: u64, max: usize, now_ms: u64) -> Result<Vec<TrialLease>, Error> {
        self.expire(now_ms)?;
        let mut index = self.lock();
        if !index.workers.contains(&worker_id) {
            return Err(Error::NoWorker(worker_id));
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = index.pending.pop_first() else {
                break;
            };
            let lease_id = (self.incarnation << 40) | (self.db.generate_id()? & ((1 << 40) - 1));
            let deadline = now_ms + self.policy.ttl_ms;
            let leased = untx(self.trials.transaction(|trials| {
                let key = trial_key(id);
                let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                    return Ok(None);
                };
                if trial.state() != TrialState::Pending {
                    return Ok(None);
                }
                trial.set_state(TrialState::Leased);
                trial.worker_id = worker_id;
                trial.lease_id = lease_id;
                trial.lease_deadline_unix_ms = deadline;
                tx_put(trials, &key, &trial)?;
                Ok(Some(trial))
            }))?;
            if let Some(trial) = leased {
                index.leased.insert(id, deadline);
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
    }

    /// Renews the worker's leases that are still current; the others are revoked
    /// (cancelled with their sweep, or expired and given to another attempt).
    pub fn heartbeat(
        &self,
        worker_id: u64,
        leases: &[LeaseRef],
        now_ms: u64,
    ) -> Result<HeartbeatOutcome, Error> {
        let mut worker = self.worker(worker_id)?;
        worker.last_seen_unix_ms = now_ms;
        self.workers
            .insert(worker_id.to_be_bytes(), worker.encode_to_vec())?;
        let mut index = self.lock();
        let mut out = HeartbeatOutcome::default();
        let deadline = now_ms + self.policy.ttl_ms;
        for lease in leases {
            let id = (lease.sweep_id, lease.index);
            let renewed = untx(self.trials.transaction(|trials| {
                let key = trial_key(id);
                let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                    return Ok(Err(RevokeReason::Expired));
                };
                if !holds(&trial, lease) {
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
                    index.leased.insert(id, deadline);
                    out.renewed.push(*lease);
                }
                Err(reason) => out.revoked.push(RevokedLease {
                    lease: Some(*lease),
                    reason: reason as i32,
                }),
            }
        }
        Ok(out)
    }

    /// Requeues every trial whose lease deadline is before `now_ms` (attempt + 1, or
    /// `FAILED` after the last attempt). Returns how many leases ended.
    pub fn expire(&self, now_ms: u64) -> Result<usize, Error> {
        let mut index = self.lock();
        let due: Vec<TrialId> = index
            .leased
            .iter()
            .filter(|&(_, &deadline)| deadline < now_ms)
            .map(|(&id, _)| id)
            .collect();
        let mut ended = 0;
        for id in due {
            let trial = self.trial(id)?;
            if trial.state() != TrialState::Leased || trial.lease_deadline_unix_ms >= now_ms {
                index.leased.remove(&id);
                continue;
            }
            let lease = LeaseRef {
                sweep_id: id.0,
                index: id.1,
                lease_id: trial.lease_id,
                worker_id: 0,
            };
            let error = format!(
                "lease {} of worker {} expired (attempt {})",
                trial.lease_id, trial.worker_id, trial.attempt
            );
            self.give_back_locked(&mut index, &lease, &error)?;
            ended += 1;
        }
        Ok(ended)
    }

    /// Gives a leased trial back with an error (or the reason it was given back): it is
    /// requeued with attempt + 1, or `FAILED` after the last attempt. Returns the new
    /// state. A stale lease is refused.
    pub fn fail(&self, lease: &LeaseRef, error: &str) -> Result<TrialState, Error> {
        let mut index = self.lock();
        self.give_back_locked(&mut index, lease, error)
    }

    fn give_back_locked(
        &self,
        index: &mut Index,
        lease: &LeaseRef,
        error: &str,
    ) -> Result<TrialState, Error> {
        let id = (lease.sweep_id, lease.index);
        let max_attempts = self.policy.max_attempts;
        let state = untx(self.trials.transaction(|trials| {
            let key = trial_key(id);
            let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                return abort(Error::NoTrial(id.0, id.1));
            };
            if !holds(&trial, lease) {
                return abort(stale(&trial, lease));
            }
            trial.error = error.to_owned();
            trial.lease_deadline_unix_ms = 0;
            if trial.attempt + 1 >= max_attempts {
                trial.set_state(TrialState::Failed);
            } else {
                trial.attempt += 1;
                trial.set_state(TrialState::Pending);
                trial.worker_id = 0;
                trial.lease_id = 0;
            }
            tx_put(trials, &key, &trial)?;
            Ok(trial.state())
        }))?;
        index.leased.remove(&id);
        if state == TrialState::Pending {
            index.pending.insert(id);
        }
        Ok(state)
    }

    /// Stores one epoch of a leased trial (under its current attempt). A stale lease is
    /// refused and stores nothing.
    pub fn report_epoch(&self, lease: &LeaseRef, report: &EpochReport) -> Result<(), Error> {
        let _index = self.lock();
        let id = (lease.sweep_id, lease.index);
        untx(
            (&self.trials, &self.epochs).transaction(|(trials, epochs)| {
                let Some(trial) = tx_get::<Trial>(trials, &trial_key(id))? else {
                    return abort(Error::NoTrial(id.0, id.1));
                };
                if !holds(&trial, lease) {
                    return abort(stale(&trial, lease));
                }
                tx_put(epochs, &epoch_key(id, trial.attempt, report.epoch), report)?;
                Ok(())
            }),
        )?;
        Ok(())
    }

    /// Finishes a leased trial: `SUCCEEDED`, or `DIVERGED` when the outcome says so, with
    /// its result. Idempotent: completing again with the lease that finished it answers
    /// the same state and changes nothing. The first finished trial of a sweep sets the
    /// sweep's dataset fingerprint.
    pub fn complete(&self, lease: &LeaseRef, result: &TrialResult) -> Result<TrialState, Error> {
        let mut index = self.lock();
        let id = (lease.sweep_id, lease.index);
        let target = match result.outcome.as_ref().and_then(|o| o.kind.as_ref()) {
            Some(outcome::Kind::Diverged(_)) => TrialState::Diverged,
            _ => TrialState::Succeeded,
        };
        // Only the first finished trial of a sweep reads and writes the sweep record.
        let known = index
            .sweeps
            .get(&id.0)
            .is_some_and(|s| !s.fingerprint.is_empty());
        let (state, fingerprint) = untx((&self.sweeps, &self.trials).transaction(
            |(sweeps, trials)| {
                let key = trial_key(id);
                let Some(mut trial) = tx_get::<Trial>(trials, &key)? else {
                    return abort(Error::NoTrial(id.0, id.1));
                };
                let finished =
                    matches!(trial.state(), TrialState::Succeeded | TrialState::Diverged);
                if finished && trial.lease_id == lease.lease_id {
                    return Ok((trial.state(), None));
                }
                if !holds(&trial, lease) {
                    return abort(stale(&trial, lease));
                }
                trial.set_state(target);
                trial.lease_deadline_unix_ms = 0;
                trial.error.clear();
                trial.result = Some(result.clone());
                tx_put(trials, &key, &trial)?;
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
                Ok((target, fingerprint))
            },
        ))?;
        index.leased.remove(&id);
        if let Some(fingerprint) = fingerprint {
            index.sweeps.entry(id.0).or_default().fingerprint = fingerprint;
        }
        Ok(state)
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

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::{Completed, Diverged, Outcome};
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
    };

    const SPEC: &str = "name = \"t\"\ndataset = \"synthetic:glyphs-tiny\"\nseeds = [0, 1]\n[grid]\nactivation = [\"relu\", \"tanh\"]\n";

    fn submit(store: &Store) -> Sweep {
        let spec = SweepSpec::from_toml_str(SPEC).unwrap();
        let trials = spec.expand(100).unwrap();
        store
            .submit(
                &NewSweep {
                    name: &spec.name,
                    spec_toml: SPEC,
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
            epochs: 1,
            ..TrialResult::default()
        }
    }

    fn lease_ref(l: &TrialLease) -> LeaseRef {
        LeaseRef {
            sweep_id: l.sweep_id,
            index: l.index,
            lease_id: l.lease_id,
            worker_id: 0,
        }
    }

    fn epoch(n: u32, loss: f64) -> EpochReport {
        EpochReport {
            epoch: n,
            train_loss: loss,
            ..EpochReport::default()
        }
    }

    #[test]
    fn submit_stores_pending_trials_in_order() {
        let dir = TempDir::new("submit");
        let store = Store::open(&dir.0, POLICY).unwrap();
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
        let store = Store::open(&dir.0, POLICY).unwrap();
        let sweep = submit(&store);
        let w = store.register("w1", "cpu", 1, 0).unwrap();
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

        let r = lease_ref(l);
        store.report_epoch(&r, &epoch(1, 2.0)).unwrap();
        store.report_epoch(&r, &epoch(2, 1.0)).unwrap();
        assert_eq!(
            store.complete(&r, &completed("abc")).unwrap(),
            TrialState::Succeeded
        );
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

        // Diverged is a result.
        let d = lease_ref(&leases[1]);
        let diverged = TrialResult {
            outcome: Some(Outcome {
                kind: Some(outcome::Kind::Diverged(Diverged { epoch: 3 })),
            }),
            ..TrialResult::default()
        };
        assert_eq!(store.complete(&d, &diverged).unwrap(), TrialState::Diverged);
    }

    #[test]
    fn complete_is_idempotent() {
        let dir = TempDir::new("idem");
        let store = Store::open(&dir.0, POLICY).unwrap();
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
        store.complete(&l, &completed("first")).unwrap();
        let before = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(
            store.complete(&l, &completed("second")).unwrap(),
            TrialState::Succeeded
        );
        assert_eq!(store.trial((sweep.id, 0)).unwrap(), before);
        // But a fail or an epoch after completion is stale.
        assert!(matches!(store.fail(&l, "x"), Err(Error::StaleLease { .. })));
        assert!(matches!(
            store.report_epoch(&l, &epoch(9, 0.0)),
            Err(Error::StaleLease { .. })
        ));
    }

    #[test]
    fn fail_requeues_then_fails_after_max_attempts() {
        let dir = TempDir::new("fail");
        let store = Store::open(&dir.0, POLICY).unwrap();
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let first = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
        store.report_epoch(&first, &epoch(1, 5.0)).unwrap();
        assert_eq!(
            store.fail(&first, "out of memory").unwrap(),
            TrialState::Pending
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!((t.state(), t.attempt), (TrialState::Pending, 1));
        assert_eq!(t.error, "out of memory");
        // The requeued trial is leased again first, as attempt 1, with a new lease id.
        let second = store.lease(w.id, 1, 0).unwrap().remove(0);
        assert_eq!((second.index, second.attempt), (0, 1));
        assert_ne!(second.lease_id, first.lease_id);
        // The first attempt's epochs do not count.
        assert!(store.epochs((sweep.id, 0)).unwrap().is_empty());
        assert_eq!(
            store
                .fail(&lease_ref(&second), "out of memory again")
                .unwrap(),
            TrialState::Failed
        );
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!(t.state(), TrialState::Failed);
        assert_eq!(t.error, "out of memory again");
        assert_eq!(store.sweep(sweep.id).unwrap().counts.unwrap().failed, 1);
    }

    #[test]
    fn expired_leases_are_requeued_and_stale_calls_refused() {
        let dir = TempDir::new("expire");
        let store = Store::open(&dir.0, POLICY).unwrap();
        let sweep = submit(&store);
        let a = store.register("a", "cpu", 1, 0).unwrap();
        let b = store.register("b", "cpu", 1, 0).unwrap();
        let old = lease_ref(&store.lease(a.id, 1, 0).unwrap()[0]);
        store.report_epoch(&old, &epoch(1, 3.0)).unwrap();
        // A heartbeat renews it.
        let hb = store.heartbeat(a.id, &[old], 900).unwrap();
        assert_eq!(hb.renewed, [old]);
        assert_eq!(store.expire(1500).unwrap(), 0);
        assert_eq!(store.expire(1901).unwrap(), 1);
        let t = store.trial((sweep.id, 0)).unwrap();
        assert_eq!((t.state(), t.attempt), (TrialState::Pending, 1));
        assert!(t.error.contains("expired"), "{}", t.error);
        let new = lease_ref(&store.lease(b.id, 1, 2000).unwrap()[0]);
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
            store.fail(&old, "x"),
            Err(Error::StaleLease { .. })
        ));
        let hb = store.heartbeat(a.id, &[old], 2100).unwrap();
        assert!(hb.renewed.is_empty());
        assert_eq!(hb.revoked[0].reason(), RevokeReason::Expired);
        assert_eq!(store.trial((sweep.id, 0)).unwrap(), before);
        assert!(store.epochs((sweep.id, 0)).unwrap().is_empty());
        assert_eq!(store.sweep(sweep.id).unwrap().dataset_fingerprint, "");

        // The new lease still works.
        store.report_epoch(&new, &epoch(1, 1.0)).unwrap();
        store.complete(&new, &completed("fp")).unwrap();
        let epochs = store.epochs((sweep.id, 0)).unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].train_loss, 1.0);
    }

    #[test]
    fn cancel_revokes_leases() {
        let dir = TempDir::new("cancel");
        let store = Store::open(&dir.0, POLICY).unwrap();
        let sweep = submit(&store);
        let w = store.register("w", "cpu", 1, 0).unwrap();
        let l = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
        let done = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
        store.complete(&done, &completed("")).unwrap();
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

    #[test]
    fn reopen_keeps_everything_and_requeues_expired_leases() {
        let dir = TempDir::new("reopen");
        let (sweep, w, leased, finished) = {
            let store = Store::open(&dir.0, POLICY).unwrap();
            let sweep = submit(&store);
            let w = store.register("w", "cpu", 1, 0).unwrap();
            let finished = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
            store.report_epoch(&finished, &epoch(1, 1.5)).unwrap();
            store.complete(&finished, &completed("fp")).unwrap();
            let leased = lease_ref(&store.lease(w.id, 1, 0).unwrap()[0]);
            store.flush_blocking().unwrap();
            (sweep, w, leased, finished)
        };
        let store = Store::open(&dir.0, POLICY).unwrap();
        let s = store.sweep(sweep.id).unwrap();
        let counts = s.counts.unwrap();
        assert_eq!((counts.succeeded, counts.leased, counts.pending), (1, 1, 2));
        assert_eq!(s.dataset_fingerprint, "fp");
        assert_eq!(store.epochs((sweep.id, finished.index)).unwrap().len(), 1);
        assert_eq!(store.worker(w.id).unwrap().name, "w");
        // The lease is still valid until its deadline…
        assert_eq!(store.expire(500).unwrap(), 0);
        store.report_epoch(&leased, &epoch(1, 2.0)).unwrap();
        // A lease id carries the database's incarnation, which a reopen keeps.
        assert_eq!(leased.lease_id >> 40, store.incarnation);
        assert!(store.incarnation >= 1);
        // …then it is requeued, and leased again after the other pending ones' turn.
        assert_eq!(store.expire(1001).unwrap(), 1);
        let next = store.lease(w.id, 10, 1001).unwrap();
        let indices: Vec<u32> = next.iter().map(|l| l.index).collect();
        assert_eq!(indices, [1, 2, 3]);
        assert!(next.iter().all(|l| l.lease_id != leased.lease_id));
        assert_eq!(next[0].attempt, 1);
        assert_eq!(next[0].dataset_fingerprint, "fp");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_all_return() {
        let dir = TempDir::new("flush");
        let store = Arc::new(Store::open(&dir.0, POLICY).unwrap());
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
        let store = Store::open(&dir.0, POLICY).unwrap();
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
}
