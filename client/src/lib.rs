//! The `sweep` command line: each subcommand is a function here over a connected
//! [`SweepServiceClient`]; `src/bin/sweep.rs` only parses flags and calls them. Every
//! error is one line ([`CliError`]) that the binary prints before exiting non-zero.
//!
//! - [`connect_with`]: the address (flag, `GRADSWEEP_COORDINATOR`, default), TLS with
//!   `https://` and `--ca`, the token (`--token-file`, `GRADSWEEP_TOKEN`), and the
//!   one-line error when nothing answers there or TLS is on one side only.
//! - [`render`]: tables as text, Markdown, CSV and JSON (the coordinator aggregates; this
//!   crate only formats what `GetTable` returns).
//! - [`effects`]: `sweep table --effects` over GetEffects.
//! - [`export`]: `sweep trials` and `sweep export`, streamed row by row (CSV, JSON lines).
//! - [`json`]: `--format json` of `sweep ls`, `sweep status` and `sweep trial`.
//! - [`trial_view`]: the one rendering of a trial's results (`sweep trial`, `worker train`).
//! - [`plot`] and [`report`]: `sweep plot` (five figures, SVG or PNG) and `sweep report`
//!   (one self-contained HTML page).

pub mod demo;
pub mod effects;
pub mod export;
pub mod json;
pub mod plot;
pub mod render;
pub mod report;
pub mod trial_view;
pub mod watch;

use gradsweep_proto::client::{AuthChannel, ConnectError};
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::*;
use std::fmt::Write as _;
use std::path::Path;

/// The address used when neither `--coordinator` nor `GRADSWEEP_COORDINATOR` is set.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7070";

/// A one-line error, printed as `error: <message>`.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line, whatever the source said.
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl std::error::Error for CliError {}

/// What the subcommands return.
pub type Result<T> = std::result::Result<T, CliError>;

/// Writes `text` to stdout and flushes it; the error (a closed pipe, a full disk) is
/// returned, never a panic as `print!` would.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes a line to stderr, ignoring a stderr that went away (`eprintln!` would panic).
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A connected client and the address it reached (for error messages).
pub struct Client {
    /// The generated gRPC client.
    pub sweeps: SweepServiceClient<AuthChannel>,
    /// The address as given (with `http://` added when it had no scheme).
    pub addr: String,
}

fn unreachable(addr: &str, why: &str) -> CliError {
    CliError(format!(
        "cannot reach the coordinator at {addr} ({why}): is `coordinator` running and \
         listening on that host and port? Set the address with --coordinator or \
         GRADSWEEP_COORDINATOR"
    ))
}

/// Connects to the coordinator at `addr` (`host:port`, `http://host:port` or
/// `https://host:port`) with the token from `GRADSWEEP_TOKEN`, if set.
pub async fn connect(addr: &str) -> Result<Client> {
    connect_with(addr, None, None).await
}

/// Connects to the coordinator at `addr`; with `https://`, over TLS trusting the CA
/// certificate in `ca` (else the system's roots); sending the token of `token_file`
/// (else `GRADSWEEP_TOKEN`, else none) with every call.
pub async fn connect_with(
    addr: &str,
    ca: Option<&Path>,
    token_file: Option<&Path>,
) -> Result<Client> {
    let addr = gradsweep_proto::client::with_scheme(addr);
    let token = gradsweep_proto::client::client_token(token_file).map_err(CliError)?;
    let (channel, _) = gradsweep_proto::client::connect(&addr, ca, token.as_deref())
        .await
        .map_err(|e| match e {
            ConnectError::Setup(line) if line.starts_with('"') => CliError(format!(
                "--coordinator {line}; expected e.g. {DEFAULT_COORDINATOR}"
            )),
            ConnectError::Setup(line) => CliError(line),
            ConnectError::Unreachable(why) => unreachable(&addr, &why),
        })?;
    Ok(Client {
        sweeps: SweepServiceClient::new(channel),
        addr,
    })
}

impl Client {
    /// Turns a failed call into one line (see [`status_error`]).
    pub(crate) fn status(&self, s: tonic::Status) -> CliError {
        status_error(&self.addr, &s)
    }
}

/// A failed call as one line a person can act on — the coordinator's own message,
/// with what the status means where the message alone does not say it; never tonic's
/// Debug text. `addr` is the coordinator's address, for the connection advice.
pub fn status_error(addr: &str, s: &tonic::Status) -> CliError {
    use tonic::Code;
    if let Some(line) = gradsweep_proto::client::status_problem(addr, s) {
        return CliError(line);
    }
    let message = s.message().replace('\n', " ");
    let message = message.trim();
    CliError(match s.code() {
        Code::Unavailable if message.starts_with("storage:") => format!(
            "the coordinator's disk refused the write ({message}); nothing was stored: free \
             space where its --db lives and try again"
        ),
        Code::Unavailable | Code::Unknown | Code::Cancelled => {
            return unreachable(
                addr,
                if message.is_empty() {
                    "unavailable"
                } else {
                    message
                },
            );
        }
        Code::DeadlineExceeded => format!("the coordinator at {addr} did not answer in time"),
        Code::Unimplemented => format!(
            "the coordinator at {addr} does not support this command ({}); is it older than \
             this sweep CLI?",
            if message.is_empty() {
                "unimplemented"
            } else {
                message
            }
        ),
        Code::ResourceExhausted | Code::OutOfRange => {
            format!("the message is larger than the coordinator or this CLI accepts ({message})")
        }
        Code::Unauthenticated => format!(
            "the coordinator at {addr} refused the token ({message}); the sweep CLI sends \
             the client token from --token-file FILE or GRADSWEEP_TOKEN"
        ),
        Code::PermissionDenied => {
            format!("the coordinator at {addr} refused the call ({message})")
        }
        Code::Internal | Code::DataLoss => {
            format!("the coordinator failed: {message}")
        }
        _ if message.is_empty() => {
            format!("the coordinator answered {:?} without a message", s.code())
        }
        // NotFound, InvalidArgument, FailedPrecondition, AlreadyExists, Aborted: the
        // coordinator's message says what is wrong (`sweep 9 not found`, a spec's field).
        _ => message.to_owned(),
    })
}

/// Parses a sweep id (`12`).
pub fn parse_sweep_id(s: &str) -> std::result::Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("expected a sweep id (a number such as 3), got \"{s}\""))
}

/// Parses a trial address `<sweep>/<index>` (`3/17`).
pub fn parse_trial_ref(s: &str) -> std::result::Result<(u64, u32), String> {
    let bad = || format!("expected <sweep id>/<trial index> such as 3/17, got \"{s}\"");
    let (a, b) = s.split_once('/').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

pub(crate) fn state_name(s: SweepState) -> &'static str {
    match s {
        SweepState::Unspecified => "unknown",
        SweepState::Running => "running",
        SweepState::Finished => "finished",
        SweepState::Cancelled => "cancelled",
    }
}

fn trial_state_name(s: TrialState) -> &'static str {
    match s {
        TrialState::Unspecified => "unknown",
        TrialState::Pending => "pending",
        TrialState::Leased => "running",
        TrialState::Succeeded => "succeeded",
        TrialState::Diverged => "diverged",
        TrialState::Failed => "failed",
        TrialState::Cancelled => "cancelled",
    }
}

pub(crate) fn done_count(c: &TrialCounts) -> u32 {
    c.succeeded + c.diverged + c.failed + c.cancelled
}

/// Reads a spec file, its size checked against `gradsweep_spec::limits` before it is
/// read (the coordinator refuses bigger specs anyway; this keeps the CLI from reading
/// or sending a huge file).
fn read_spec(path: &std::path::Path) -> Result<String> {
    gradsweep_spec::limits::read_text_file(path, "sweep spec")
        .map_err(|e| CliError(e.in_file(path).to_string()))
}

/// `sweep submit`: sends the spec file; returns the lines to print and the new sweep's id.
pub async fn submit(client: &mut Client, path: &std::path::Path) -> Result<(String, u64)> {
    let spec_toml = read_spec(path)?;
    let sweep = client
        .sweeps
        .submit_sweep(SubmitSweepRequest { spec_toml })
        .await
        .map_err(|s| {
            let e = client.status(s);
            CliError(format!("{}: {}", path.display(), e.0))
        })?
        .into_inner()
        .sweep
        .ok_or_else(|| CliError("the coordinator answered without a sweep".into()))?;
    Ok((
        format!(
            "submitted sweep {} \"{}\": {} trials\n",
            sweep.id, sweep.name, sweep.trial_count
        ),
        sweep.id,
    ))
}

async fn list_sweeps(client: &mut Client) -> Result<Vec<Sweep>> {
    Ok(client
        .sweeps
        .list_sweeps(ListSweepsRequest {})
        .await
        .map_err(|s| client.status(s))?
        .into_inner()
        .sweeps)
}

/// `sweep ls --format json` (keys: [`json::ls`]).
pub async fn ls_json(client: &mut Client) -> Result<String> {
    let sweeps = list_sweeps(client).await?;
    Ok(json::text(&json::ls(&sweeps)))
}

/// `sweep status --format json` (keys: [`json::status`]).
pub async fn status_json(client: &mut Client, id: u64) -> Result<String> {
    let s = get_sweep(client, id).await?;
    let running = running(client, id).await?;
    let eta = eta_seconds(&s, now_unix_ms());
    Ok(json::text(&json::status(&s, &running, eta)))
}

/// `sweep trial --format json` (keys: [`json::trial`]).
pub async fn trial_json(client: &mut Client, id: u64, index: u32) -> Result<String> {
    let detail = get_trial(client, id, index).await?;
    let sweep = get_sweep(client, id).await?;
    Ok(json::text(&json::trial(&detail, &sweep.axes)))
}

async fn running(client: &mut Client, id: u64) -> Result<Vec<RunningTrial>> {
    Ok(client
        .sweeps
        .list_running(ListRunningRequest { sweep_id: id })
        .await
        .map_err(|s| client.status(s))?
        .into_inner()
        .trials)
}

pub(crate) async fn get_trial(client: &mut Client, id: u64, index: u32) -> Result<TrialDetail> {
    client
        .sweeps
        .get_trial(GetTrialRequest {
            sweep_id: id,
            index,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| client.status(s))
}

/// `sweep ls`: one line per sweep.
pub async fn ls(client: &mut Client) -> Result<String> {
    let sweeps = list_sweeps(client).await?;
    if sweeps.is_empty() {
        return Ok("no sweeps yet (submit one with `sweep submit <spec.toml>`)\n".into());
    }
    let rows: Vec<Vec<String>> = sweeps
        .iter()
        .map(|s| {
            let c = s.counts.unwrap_or_default();
            vec![
                s.id.to_string(),
                s.name.clone(),
                state_name(s.state()).into(),
                format!("{}/{}", done_count(&c), s.trial_count),
                c.succeeded.to_string(),
                c.diverged.to_string(),
                c.failed.to_string(),
            ]
        })
        .collect();
    Ok(render::grid(
        &["ID", "NAME", "STATE", "DONE", "OK", "DIVERGED", "FAILED"],
        &rows,
    ))
}

pub(crate) async fn get_sweep(client: &mut Client, id: u64) -> Result<Sweep> {
    client
        .sweeps
        .get_sweep(GetSweepRequest { sweep_id: id })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| client.status(s))
}

/// `sweep status`: the sweep's state, axes and trial counts per state.
pub async fn status(client: &mut Client, id: u64) -> Result<String> {
    let s = get_sweep(client, id).await?;
    let c = s.counts.unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sweep {} \"{}\": {} ({}/{} trials done)",
        s.id,
        s.name,
        state_name(s.state()),
        done_count(&c),
        s.trial_count
    );
    for a in &s.axes {
        let _ = writeln!(out, "  axis {}: {}", a.key, a.labels.join(", "));
    }
    let seeds: Vec<String> = s.seeds.iter().map(|x| x.to_string()).collect();
    let _ = writeln!(out, "  seeds: {}", seeds.join(", "));
    if let Some(eta) = eta_line(&s, now_unix_ms()) {
        let _ = writeln!(out, "  {eta}");
    }
    let running = running(client, id).await?;
    // Workers and the trials each is training.
    let mut by_worker: std::collections::BTreeMap<(String, String), Vec<u32>> = Default::default();
    for t in &running {
        let name = if t.worker_name.is_empty() {
            format!("worker {}", t.worker_id)
        } else {
            t.worker_name.clone()
        };
        by_worker
            .entry((name, t.device.clone()))
            .or_default()
            .push(t.index);
    }
    for ((name, device), trials) in &by_worker {
        let list: Vec<String> = trials.iter().map(|i| format!("{id}/{i}")).collect();
        let _ = writeln!(
            out,
            "  worker {name} ({device}) running {}",
            list.join(", ")
        );
    }
    for (name, n) in [
        ("pending", c.pending),
        ("running", c.leased),
        ("succeeded", c.succeeded),
        ("diverged", c.diverged),
        ("failed", c.failed),
        ("cancelled", c.cancelled),
    ] {
        let _ = writeln!(out, "  {name:<10} {n}");
    }
    Ok(out)
}

/// `sweep cancel`: cancels the sweep's unfinished trials.
pub async fn cancel(client: &mut Client, id: u64) -> Result<String> {
    let s = client
        .sweeps
        .cancel_sweep(CancelSweepRequest { sweep_id: id })
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    let c = s.counts.unwrap_or_default();
    Ok(format!(
        "sweep {} is {} ({} succeeded, {} diverged, {} failed, {} cancelled)\n",
        s.id,
        state_name(s.state()),
        c.succeeded,
        c.diverged,
        c.failed,
        c.cancelled
    ))
}

/// `sweep retry`: requeues the sweep's FAILED (and with `diverged`, DIVERGED) trials.
pub async fn retry(client: &mut Client, id: u64, diverged: bool) -> Result<String> {
    let r = client
        .sweeps
        .retry_sweep(RetrySweepRequest {
            sweep_id: id,
            include_diverged: diverged,
        })
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    Ok(retry_line(id, diverged, r.requeued))
}

/// What `sweep retry` prints: `requeued 2 FAILED trials of sweep 3`.
pub fn retry_line(id: u64, diverged: bool, requeued: u32) -> String {
    let which = if diverged {
        "FAILED or DIVERGED"
    } else {
        "FAILED"
    };
    match requeued {
        0 => format!("sweep {id} has no {which} trials to requeue\n"),
        1 => format!("requeued 1 {which} trial of sweep {id}\n"),
        n => format!("requeued {n} {which} trials of sweep {id}\n"),
    }
}

/// Metric names as the coordinator spells them; `*_acc` is accepted for `*_accuracy`.
pub fn metric_name(m: &str) -> String {
    match m.strip_suffix("_acc") {
        Some(prefix) => format!("{prefix}_accuracy"),
        None => m.to_owned(),
    }
}

/// `sweep table`: asks the coordinator for the aggregated table.
pub async fn table(
    client: &mut Client,
    id: u64,
    rows: Vec<String>,
    metrics: Vec<String>,
    best_val_epoch: bool,
) -> Result<Table> {
    client
        .sweeps
        .get_table(GetTableRequest {
            sweep_id: id,
            rows,
            metrics: metrics.iter().map(|m| metric_name(m)).collect(),
            best_val_epoch,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| client.status(s))
}

/// `sweep trial`: a trial's config, epochs, verdicts and gradient check.
pub async fn trial(client: &mut Client, id: u64, index: u32) -> Result<String> {
    let detail = get_trial(client, id, index).await?;
    Ok(render_trial(&detail))
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn attempt_end_name(kind: AttemptEndKind) -> &'static str {
    match kind {
        AttemptEndKind::Unspecified => "ended",
        AttemptEndKind::Error => "error",
        AttemptEndKind::Expired => "lease expired",
        AttemptEndKind::HandedBack => "handed back",
        AttemptEndKind::DatasetMismatch => "dataset mismatch",
        AttemptEndKind::Retried => "retried",
    }
}

/// `sweep trial`'s text for a trial: state, attempts (failures and lost leases), the
/// history of earlier attempts, config, epochs, layers, verdicts and gradient check.
pub fn render_trial(detail: &TrialDetail) -> String {
    let t = detail.trial.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trial {}/{} [{}]: {} (seed {}, attempt {}; {}, {})",
        t.sweep_id,
        t.index,
        t.key,
        trial_state_name(t.state()),
        t.seed,
        t.attempt,
        plural(t.failures, "failure", "failures"),
        plural(t.lost, "lease lost", "leases lost")
    );
    if !t.error.is_empty() {
        let _ = writeln!(out, "error: {}", t.error.replace('\n', " "));
    }
    if !t.history.is_empty() {
        let _ = writeln!(out, "\nhistory:");
        let rows: Vec<Vec<String>> = t
            .history
            .iter()
            .map(|h| {
                let worker = match (h.worker_name.is_empty(), h.worker_id) {
                    (false, _) => h.worker_name.clone(),
                    (true, 0) => "-".to_owned(),
                    (true, id) => format!("worker {id}"),
                };
                vec![
                    h.attempt.to_string(),
                    attempt_end_name(h.kind()).to_owned(),
                    worker,
                    h.reason.replace('\n', " "),
                ]
            })
            .collect();
        out.push_str(&render::grid(&["ATTEMPT", "ENDED", "WORKER", "WHY"], &rows));
    }
    let _ = writeln!(out, "\nconfig:");
    for line in t.config_toml.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(r) = &t.result {
        let _ = writeln!(
            out,
            "\nran on {} ({}) in {:.1}s",
            if r.worker_name.is_empty() {
                "an unnamed worker"
            } else {
                &r.worker_name
            },
            r.device,
            r.seconds
        );
    }
    if !detail.epochs.is_empty() {
        out.push_str(&trial_view::epochs(&detail.epochs));
    }
    out.push_str(&trial_view::summary(
        t.result.as_ref(),
        &detail.epochs,
        None,
    ));
    out
}

/// A trial's epoch count, read from its canonical config (`epochs = N`).
pub(crate) fn config_epochs(config_toml: &str) -> Option<u64> {
    config_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("epochs = "))
        .and_then(|n| n.trim().parse().ok())
}

/// `sweep watch` with bars (drawn only when stderr is a terminal): see [`watch::watch`].
/// Returns the closing line.
pub async fn watch(client: &mut Client, id: u64) -> Result<String> {
    watch::watch(client, id, false).await
}

/// `sweep watch` as the binary runs it: bars on a terminal, else (stdout is a file or a
/// pipe) one line per trial that finishes while watching.
pub async fn watch_live(client: &mut Client, id: u64) -> Result<String> {
    use std::io::IsTerminal;
    watch::watch(client, id, !std::io::stdout().is_terminal()).await
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// For a running sweep with finished trials: the seconds left at the rate since it was
/// submitted.
pub fn eta_seconds(s: &Sweep, now_ms: u64) -> Option<f64> {
    let c = s.counts.unwrap_or_default();
    let done = done_count(&c);
    if s.state() != SweepState::Running || done == 0 {
        return None;
    }
    let elapsed_s = (now_ms.saturating_sub(s.created_unix_ms) as f64 / 1000.0).max(1e-3);
    let rate = f64::from(done) / elapsed_s;
    Some(f64::from(s.trial_count.saturating_sub(done)) / rate)
}

/// For a running sweep with finished trials: the rate since it was submitted and the
/// time left at that rate.
pub fn eta_line(s: &Sweep, now_ms: u64) -> Option<String> {
    let left = eta_seconds(s, now_ms)?;
    let c = s.counts.unwrap_or_default();
    let elapsed_s = (now_ms.saturating_sub(s.created_unix_ms) as f64 / 1000.0).max(1e-3);
    let rate = f64::from(done_count(&c)) / elapsed_s;
    let secs = left.round() as u64;
    Some(format!(
        "eta: ~{}m{:02}s at the rate so far ({:.1} trials/min)",
        secs / 60,
        secs % 60,
        rate * 60.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_extrapolates_the_rate_since_submission() {
        let mut s = Sweep {
            state: SweepState::Running as i32,
            created_unix_ms: 1_000_000,
            trial_count: 40,
            counts: Some(TrialCounts {
                succeeded: 8,
                failed: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        // 10 trials in 60 s: 30 left take 180 s.
        assert_eq!(
            eta_line(&s, 1_060_000).unwrap(),
            "eta: ~3m00s at the rate so far (10.0 trials/min)"
        );
        s.state = SweepState::Finished as i32;
        assert!(eta_line(&s, 1_060_000).is_none());
    }

    #[test]
    fn retry_lines_count_what_was_requeued() {
        assert_eq!(
            retry_line(3, false, 0),
            "sweep 3 has no FAILED trials to requeue\n"
        );
        assert_eq!(
            retry_line(3, false, 1),
            "requeued 1 FAILED trial of sweep 3\n"
        );
        assert_eq!(
            retry_line(3, true, 4),
            "requeued 4 FAILED or DIVERGED trials of sweep 3\n"
        );
    }

    #[test]
    fn statuses_read_as_one_line_a_person_can_act_on() {
        let addr = "http://127.0.0.1:7070";
        let line = |s: tonic::Status| status_error(addr, &s).to_string();
        assert!(
            line(tonic::Status::unavailable("tcp connect error")).starts_with(
                "cannot reach the coordinator at http://127.0.0.1:7070 (tcp connect error)"
            )
        );
        assert!(
            line(tonic::Status::unavailable("storage: No space left on device"))
                .starts_with("the coordinator's disk refused the write (storage: No space left on device); nothing was stored")
        );
        assert_eq!(
            line(tonic::Status::invalid_argument(
                "grid.activation[2]: unknown activation"
            )),
            "grid.activation[2]: unknown activation"
        );
        assert_eq!(
            line(tonic::Status::failed_precondition("")),
            "the coordinator answered FailedPrecondition without a message"
        );
        assert!(!line(tonic::Status::internal("a\nb")).contains('\n'));
    }

    #[test]
    fn trial_refs_and_metric_names_parse() {
        assert_eq!(parse_trial_ref("3/17"), Ok((3, 17)));
        assert!(parse_trial_ref("3").is_err());
        assert!(parse_sweep_id("x").is_err());
        assert_eq!(metric_name("test_acc"), "test_accuracy");
        assert_eq!(metric_name("val_loss"), "val_loss");
    }
}
