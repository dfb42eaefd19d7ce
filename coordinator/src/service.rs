//! The gRPC services: `SweepService` for clients and `WorkerService` for workers, both
//! answering from the [`Store`].
//!
//! Errors map to gRPC codes: a bad spec or request (or a worker report that breaks the
//! protocol) is `INVALID_ARGUMENT` (the message names the field), an unknown
//! sweep/trial/worker `NOT_FOUND`, a stale lease or another worker's
//! `FAILED_PRECONDITION`, a storage failure `UNAVAILABLE` (the message begins with
//! `storage:`), anything else `INTERNAL`. `SubmitSweep`, `ReportEpoch`, `Complete`,
//! `Fail`, `CancelSweep` and `RetrySweep` answer only after the database is flushed
//! (concurrent calls share flushes: [`Store::flush`]); `ReportEpochs` answers each of
//! its reports on its own, after one flush for all of them.
//!
//! Reads whose cost grows with a sweep's trials (`GetTable`, `GetEffects`,
//! `ListSweeps`, `ListRunning`, `GetTrial`, and the streams of `ListTrials` and
//! `ExportTrials`) run on the low-priority reader threads ([`crate::readers`]), so that
//! the async workers keep answering `Lease` and the reports while a table is built. Sweep
//! counts are stored (one read), so `ListSweeps`, `GetSweep` and `WatchSweep` never
//! read the trials; `WatchSweep` sends an event when its sweep changes (the broadcast
//! of every state change and epoch), at most one per change, re-reading the counts
//! once a second besides (expired leases are requeued without a broadcast).
//!
//! No `SweepService` answer carries a lease id (they are the workers' secrets), and only
//! `GetSweep` carries a sweep's spec text, so that no list's size depends on the specs'.

use crate::readers::Readers;
use crate::store::{MAX_REPORTS_PER_CALL, NewSweep, Store};
use crate::{Error, effects, table};
use gradsweep_proto::sweep_service_server::SweepService;
use gradsweep_proto::worker_service_server::WorkerService;
use gradsweep_proto::{
    CancelSweepRequest, CompleteRequest, CompleteResponse, Effects, ExportTrialsRequest,
    FailRequest, FailResponse, GetEffectsRequest, GetSweepRequest, GetTableRequest,
    GetTrialRequest, HeartbeatRequest, HeartbeatResponse, LeaseRef, LeaseRequest, LeaseResponse,
    ListRunningRequest, ListRunningResponse, ListSweepsRequest, ListSweepsResponse,
    ListTrialsRequest, RegisterRequest, RegisterResponse, ReportEpochRequest, ReportEpochResponse,
    ReportEpochsRequest, ReportEpochsResponse, ReportOutcome, RetrySweepRequest,
    RetrySweepResponse, RunningTrial, SubmitSweepRequest, SubmitSweepResponse, Sweep, SweepEvent,
    SweepState, Table, TrialDetail, TrialExport, TrialState, TrialSummary, WatchSweepRequest,
};
use gradsweep_spec::SweepSpec;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The gRPC status for an error.
pub fn status(e: Error) -> Status {
    let message = e.to_string();
    match e {
        Error::StaleLease { .. } | Error::NotLeaseHolder { .. } => {
            Status::failed_precondition(message)
        }
        Error::Storage(_) | Error::StorageFailed(_) | Error::FlushFailed(_) => {
            Status::unavailable(message)
        }
        Error::NoSweep(_) | Error::NoTrial(..) | Error::NoWorker(_) => Status::not_found(message),
        Error::Spec(_) | Error::BadRequest(_) => Status::invalid_argument(message),
        _ => Status::internal(message),
    }
}

/// A change to one trial, for sweep watchers.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// The sweep.
    pub sweep_id: u64,
    /// The trial's index.
    pub index: u32,
    /// Its state after the change.
    pub state: TrialState,
    /// The epoch reported, or 0.
    pub epoch: u32,
}

/// Both services over one store; cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    store: Arc<Store>,
    changes: broadcast::Sender<Change>,
    max_trials: u64,
    readers: Arc<Readers>,
}

impl Coordinator {
    /// Services over `store`, with their reader threads; a sweep may expand into at
    /// most `max_trials` trials.
    pub fn new(store: Arc<Store>, max_trials: u64) -> Result<Coordinator, Error> {
        let (changes, _) = broadcast::channel(1024);
        let readers = Readers::for_this_machine()
            .map_err(|e| Error::Internal(format!("cannot start the reader threads: {e}")))?;
        Ok(Coordinator {
            store,
            changes,
            max_trials,
            readers: Arc::new(readers),
        })
    }

    /// Runs a read whose cost grows with a sweep on the reader threads (low priority,
    /// off the async workers), so that Lease and the reports keep their latency.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        self.readers.run(f).await?.map_err(status)
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn changed(&self, lease: &LeaseRef, state: TrialState, epoch: u32) {
        // Nobody watching is fine.
        let _ = self.changes.send(Change {
            sweep_id: lease.sweep_id,
            index: lease.index,
            state,
            epoch,
        });
    }
}

/// The most reports a `ReportEpochs` call has checked and written on the async worker
/// that received it; a larger batch goes to the blocking pool.
const INLINE_REPORTS: usize = 64;

fn lease_of(lease: Option<LeaseRef>) -> Result<LeaseRef, Status> {
    lease.ok_or_else(|| Status::invalid_argument("lease: missing"))
}

/// The largest spec text `GetSweep` sends; a larger stored one (from before specs had
/// a size limit) is replaced by a one-line note, so that a default client (4 MiB
/// messages) can still read the sweep.
pub const MAX_SPEC_ANSWER: usize = 2 << 20;

/// A sweep for any answer but `GetSweep`: without its spec text.
fn listed(mut sweep: Sweep) -> Sweep {
    sweep.spec_toml = String::new();
    sweep
}

#[tonic::async_trait]
impl SweepService for Coordinator {
    async fn submit_sweep(
        &self,
        request: Request<SubmitSweepRequest>,
    ) -> Result<Response<SubmitSweepResponse>, Status> {
        let text = request.into_inner().spec_toml;
        let store = self.store.clone();
        let max_trials = self.max_trials;
        let sweep = tokio::task::spawn_blocking(move || -> Result<Sweep, Error> {
            let spec = SweepSpec::from_toml_str(&text)?;
            let trials = spec.expand(max_trials)?;
            store.submit(
                &NewSweep {
                    name: &spec.name,
                    spec_toml: &text,
                    axes: &spec.axes,
                    seeds: &spec.seeds,
                    trials: &trials,
                },
                now_ms(),
            )
        })
        .await
        .map_err(|e| status(Error::Internal(format!("submit task failed: {e}"))))?
        .map_err(status)?;
        self.store.flush().await.map_err(status)?;
        tracing::info!(sweep = sweep.id, name = %sweep.name, trials = sweep.counts.as_ref().map_or(0, |c| c.pending), "sweep submitted");
        Ok(Response::new(SubmitSweepResponse {
            sweep: Some(listed(sweep)),
        }))
    }

    async fn list_sweeps(
        &self,
        _: Request<ListSweepsRequest>,
    ) -> Result<Response<ListSweepsResponse>, Status> {
        let store = self.store.clone();
        let sweeps = self.read(move || store.sweeps()).await?;
        let sweeps = sweeps.into_iter().map(listed).collect();
        Ok(Response::new(ListSweepsResponse { sweeps }))
    }

    async fn list_running(
        &self,
        request: Request<ListRunningRequest>,
    ) -> Result<Response<ListRunningResponse>, Status> {
        let id = request.into_inner().sweep_id;
        let store = self.store.clone();
        let trials = self
            .read(move || {
                store.sweep(id)?;
                let mut out = Vec::new();
                for summary in store.summaries(id) {
                    let summary = summary?;
                    if summary.state() != TrialState::Leased {
                        continue;
                    }
                    let t = store.trial((id, summary.index))?;
                    if t.state() != TrialState::Leased {
                        continue;
                    }
                    let worker = store.worker(t.worker_id).ok();
                    out.push(RunningTrial {
                        index: t.index,
                        key: t.key,
                        worker_id: t.worker_id,
                        worker_name: worker.as_ref().map(|w| w.name.clone()).unwrap_or_default(),
                        device: worker.map(|w| w.device).unwrap_or_default(),
                        lease_deadline_unix_ms: t.lease_deadline_unix_ms,
                    });
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(ListRunningResponse { trials }))
    }

    async fn get_sweep(
        &self,
        request: Request<GetSweepRequest>,
    ) -> Result<Response<Sweep>, Status> {
        let id = request.into_inner().sweep_id;
        let mut sweep = self.store.sweep(id).map_err(status)?;
        if sweep.spec_toml.len() > MAX_SPEC_ANSWER {
            sweep.spec_toml = format!(
                "# the spec ({} bytes) is larger than an answer may carry ({} bytes)\n",
                sweep.spec_toml.len(),
                MAX_SPEC_ANSWER
            );
        }
        Ok(Response::new(sweep))
    }

    type WatchSweepStream = ReceiverStream<Result<SweepEvent, Status>>;
    type ListTrialsStream = ReceiverStream<Result<TrialSummary, Status>>;
    type ExportTrialsStream = ReceiverStream<Result<TrialExport, Status>>;

    async fn list_trials(
        &self,
        request: Request<ListTrialsRequest>,
    ) -> Result<Response<Self::ListTrialsStream>, Status> {
        crate::export::list_trials(&self.store, &self.readers, request.into_inner())
            .map(Response::new)
    }

    async fn export_trials(
        &self,
        request: Request<ExportTrialsRequest>,
    ) -> Result<Response<Self::ExportTrialsStream>, Status> {
        crate::export::export_trials(&self.store, &self.readers, request.into_inner())
            .map(Response::new)
    }

    async fn get_effects(
        &self,
        request: Request<GetEffectsRequest>,
    ) -> Result<Response<Effects>, Status> {
        let r = request.into_inner();
        let store = self.store.clone();
        let effects = self
            .read(move || {
                let sweep = store.sweep(r.sweep_id)?;
                effects::build(
                    &sweep,
                    store.summaries(r.sweep_id),
                    &r.metric,
                    r.best_val_epoch,
                )
            })
            .await?;
        Ok(Response::new(effects))
    }

    async fn watch_sweep(
        &self,
        request: Request<WatchSweepRequest>,
    ) -> Result<Response<Self::WatchSweepStream>, Status> {
        let id = request.into_inner().sweep_id;
        self.store.sweep(id).map_err(status)?;
        let (tx, rx) = mpsc::channel(16);
        let mut changes = self.changes.subscribe();
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut last: Option<Change> = None;
            loop {
                let sweep = match store.sweep(id) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                let event = SweepEvent {
                    sweep_id: id,
                    counts: sweep.counts,
                    state: sweep.state,
                    index: last.map_or(0, |c| c.index),
                    trial_state: last.map_or(0, |c| c.state as i32),
                    epoch: last.map_or(0, |c| c.epoch),
                };
                if tx.send(Ok(event)).await.is_err() || sweep.state() != SweepState::Running {
                    return;
                }
                // The next change to this sweep (or a second, for requeued leases, which
                // are not broadcast); the changes that came meanwhile are one event.
                let wait = async {
                    loop {
                        match changes.recv().await {
                            Ok(c) if c.sweep_id == id => return Ok(Some(c)),
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(None),
                            Err(broadcast::error::RecvError::Closed) => return Err(()),
                        }
                    }
                };
                match tokio::time::timeout(Duration::from_secs(1), wait).await {
                    Ok(Ok(Some(c))) => last = Some(c),
                    Ok(Ok(None)) | Err(_) => {}
                    Ok(Err(())) => return,
                }
                loop {
                    match changes.try_recv() {
                        Ok(c) if c.sweep_id == id => last = Some(c),
                        Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_sweep(
        &self,
        request: Request<CancelSweepRequest>,
    ) -> Result<Response<Sweep>, Status> {
        let id = request.into_inner().sweep_id;
        let sweep = self.store.cancel(id).map_err(status)?;
        self.store.flush().await.map_err(status)?;
        tracing::info!(sweep = id, "sweep cancelled");
        let _ = self.changes.send(Change {
            sweep_id: id,
            index: 0,
            state: TrialState::Cancelled,
            epoch: 0,
        });
        Ok(Response::new(listed(sweep)))
    }

    async fn retry_sweep(
        &self,
        request: Request<RetrySweepRequest>,
    ) -> Result<Response<RetrySweepResponse>, Status> {
        let r = request.into_inner();
        let (sweep, requeued) = self
            .store
            .retry(r.sweep_id, r.include_diverged, now_ms())
            .map_err(status)?;
        self.store.flush().await.map_err(status)?;
        let _ = self.changes.send(Change {
            sweep_id: r.sweep_id,
            index: 0,
            state: TrialState::Pending,
            epoch: 0,
        });
        Ok(Response::new(RetrySweepResponse {
            sweep: Some(listed(sweep)),
            requeued,
        }))
    }

    async fn get_table(
        &self,
        request: Request<GetTableRequest>,
    ) -> Result<Response<Table>, Status> {
        let r = request.into_inner();
        let store = self.store.clone();
        let table = self
            .read(move || {
                let sweep = store.sweep(r.sweep_id)?;
                table::build(
                    &sweep,
                    store.summaries(r.sweep_id),
                    &r.rows,
                    &r.metrics,
                    r.best_val_epoch,
                )
            })
            .await?;
        Ok(Response::new(table))
    }

    async fn get_trial(
        &self,
        request: Request<GetTrialRequest>,
    ) -> Result<Response<TrialDetail>, Status> {
        let r = request.into_inner();
        let id = (r.sweep_id, r.index);
        let store = self.store.clone();
        let (trial, epochs) = self
            .read(move || {
                let mut trial = store.trial(id)?;
                // The lease id is the worker's secret.
                trial.lease_id = 0;
                Ok((trial, store.epochs(id)?))
            })
            .await?;
        Ok(Response::new(TrialDetail {
            trial: Some(trial),
            epochs,
        }))
    }
}

#[tonic::async_trait]
impl WorkerService for Coordinator {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        let worker = self
            .store
            .register(&r.name, &r.device, r.slots, now_ms())
            .map_err(status)?;
        let ttl = self.store.policy().ttl_ms;
        tracing::info!(worker = worker.id, name = %r.name, device = %r.device, slots = r.slots, "worker registered");
        Ok(Response::new(RegisterResponse {
            worker_id: worker.id,
            lease_ttl_ms: ttl,
            heartbeat_interval_ms: (ttl / 3).max(1),
        }))
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let r = request.into_inner();
        let max = r.max_trials.clamp(1, crate::store::MAX_SLOTS) as usize;
        let leases = self
            .store
            .lease(r.worker_id, max, now_ms())
            .map_err(status)?;
        for l in &leases {
            let lease = LeaseRef {
                sweep_id: l.sweep_id,
                index: l.index,
                lease_id: l.lease_id,
                worker_id: r.worker_id,
            };
            self.changed(&lease, TrialState::Leased, 0);
        }
        let retry_after_ms = if leases.is_empty() {
            (self.store.policy().ttl_ms / 10).clamp(50, 1000)
        } else {
            0
        };
        Ok(Response::new(LeaseResponse {
            leases,
            retry_after_ms,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let outcome = self
            .store
            .heartbeat(r.worker_id, &r.leases, now_ms())
            .map_err(status)?;
        Ok(Response::new(HeartbeatResponse {
            renewed: outcome.renewed,
            revoked: outcome.revoked,
        }))
    }

    async fn report_epochs(
        &self,
        request: Request<ReportEpochsRequest>,
    ) -> Result<Response<ReportEpochsResponse>, Status> {
        let reports = request.into_inner().reports;
        if reports.len() > MAX_REPORTS_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "reports: {}, the limit is {MAX_REPORTS_PER_CALL} per call \
                 (MAX_REPORTS_PER_CALL)",
                reports.len()
            )));
        }
        // Each report's problems are its own: a missing lease or report refuses it only.
        let mut outcomes: Vec<Option<Status>> = vec![None; reports.len()];
        let mut checked = Vec::with_capacity(reports.len());
        for (i, r) in reports.into_iter().enumerate() {
            match (r.lease, r.report) {
                (Some(lease), Some(report)) => checked.push((i, lease, report)),
                (None, _) => {
                    outcomes[i] = Some(Status::invalid_argument(format!(
                        "reports[{i}].lease: missing"
                    )))
                }
                (_, None) => {
                    outcomes[i] = Some(Status::invalid_argument(format!(
                        "reports[{i}].report: missing"
                    )))
                }
            }
        }
        let store = self.store.clone();
        let inline = checked.len() <= INLINE_REPORTS;
        let take = move || {
            let refs: Vec<(LeaseRef, &gradsweep_proto::EpochReport)> =
                checked.iter().map(|(_, l, r)| (*l, r)).collect();
            let stored = store.report_epochs(&refs);
            (checked, stored)
        };
        // A few reports are checked and written here (each is a map lookup and a key
        // written; a blocking thread per call grew the pool to one thread per
        // concurrent caller, and the memory with it); a large batch on the blocking pool.
        let (checked, stored) = if inline {
            take()
        } else {
            tokio::task::spawn_blocking(take)
                .await
                .map_err(|e| status(Error::Internal(format!("a report task failed: {e}"))))?
        };
        let any = stored.iter().any(Result::is_ok);
        let flushed = if any {
            self.store.flush().await.map_err(status)
        } else {
            Ok(())
        };
        for ((i, lease, report), result) in checked.iter().zip(stored) {
            outcomes[*i] = Some(match (result, &flushed) {
                (Ok(()), Ok(())) => {
                    self.changed(lease, TrialState::Leased, report.epoch);
                    Status::ok("")
                }
                (Ok(()), Err(s)) => s.clone(),
                (Err(e), _) => status(e),
            });
        }
        let outcomes = outcomes
            .into_iter()
            .map(|s| {
                let s = s.unwrap_or_else(|| Status::internal("no outcome"));
                ReportOutcome {
                    code: s.code() as u32,
                    message: s.message().to_owned(),
                }
            })
            .collect();
        Ok(Response::new(ReportEpochsResponse { outcomes }))
    }

    async fn report_epoch(
        &self,
        request: Request<ReportEpochRequest>,
    ) -> Result<Response<ReportEpochResponse>, Status> {
        let r = request.into_inner();
        let lease = lease_of(r.lease)?;
        let report = r
            .report
            .ok_or_else(|| Status::invalid_argument("report: missing"))?;
        self.store.report_epoch(&lease, &report).map_err(status)?;
        // Flushed too: an acknowledged epoch that a crash loses would leave a finished
        // trial with a hole in its history.
        self.store.flush().await.map_err(status)?;
        self.changed(&lease, TrialState::Leased, report.epoch);
        Ok(Response::new(ReportEpochResponse {}))
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        let r = request.into_inner();
        let lease = lease_of(r.lease)?;
        let result = r.result.unwrap_or_default();
        let state = self.store.complete(&lease, &result).map_err(status)?;
        self.store.flush().await.map_err(status)?;
        self.changed(&lease, state, 0);
        tracing::info!(
            sweep = lease.sweep_id,
            index = lease.index,
            worker = lease.worker_id,
            state = state.as_str_name(),
            "trial finished"
        );
        if let Ok(s) = self.store.sweep(lease.sweep_id)
            && s.state() == SweepState::Finished
        {
            tracing::info!(sweep = s.id, "sweep finished");
        }
        Ok(Response::new(CompleteResponse {
            state: state as i32,
        }))
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<FailResponse>, Status> {
        let r = request.into_inner();
        let lease = lease_of(r.lease)?;
        let state = self
            .store
            .fail(&lease, r.kind(), &r.error, now_ms())
            .map_err(status)?;
        self.store.flush().await.map_err(status)?;
        self.changed(&lease, state, 0);
        tracing::info!(sweep = lease.sweep_id, index = lease.index, worker = lease.worker_id, kind = r.kind().as_str_name(), reason = %r.error, state = state.as_str_name(), "trial attempt failed");
        if state == TrialState::Failed
            && let Ok(s) = self.store.sweep(lease.sweep_id)
            && s.state() == SweepState::Finished
        {
            tracing::info!(sweep = s.id, "sweep finished");
        }
        Ok(Response::new(FailResponse {
            state: state as i32,
        }))
    }
}
