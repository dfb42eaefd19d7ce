//! `sweep trials` and `sweep export`: a sweep's trials (× epochs (× layers)) in long
//! format, streamed from `ListTrials` / `ExportTrials` row by row, so that no output
//! is built whole.
//!
//! Columns: `index`, one per axis (named by its key, the trial's canonical label),
//! `seed`, `state`, then what is exported (see [`columns`]). CSV writes a NaN as `NaN`
//! and an infinity as `inf` / `-inf` (what pandas and polars read as floats) and a
//! missing value as an empty field; JSON writes both as `null`. A file (`--out`) is
//! written beside its name and renamed into place only when complete.

use crate::{CliError, Client, Result, render};
use gradsweep_proto::{
    Axis, AxisFilter, EpochReport, ExportTrialsRequest, LayerDiagnostics, ListTrialsRequest, Sweep,
    TrialState, TrialSummary,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `sweep export` writes one row per.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// A row per trial: its summary and final numbers.
    Trials,
    /// A row per stored epoch of each trial.
    Epochs,
    /// A row per Linear layer of each stored epoch.
    Layers,
}

/// Parses `--what`.
pub fn parse_what(s: &str) -> Result<What> {
    match s {
        "trials" => Ok(What::Trials),
        "epochs" => Ok(What::Epochs),
        "layers" => Ok(What::Layers),
        _ => Err(CliError(format!(
            "--what \"{s}\": expected trials, epochs or layers"
        ))),
    }
}

/// The row formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    /// Comma-separated, a header line first.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects (`sweep trials --format json`).
    Json,
}

/// Parses `sweep export --format`.
pub fn parse_export_format(s: &str) -> Result<RowFormat> {
    match s {
        "csv" => Ok(RowFormat::Csv),
        "jsonl" => Ok(RowFormat::Jsonl),
        _ => Err(CliError(format!("--format \"{s}\": expected csv or jsonl"))),
    }
}

/// The state names `--state` takes and the outputs use, with their states.
pub const STATE_NAMES: [(&str, TrialState); 7] = [
    ("pending", TrialState::Pending),
    ("running", TrialState::Leased),
    ("leased", TrialState::Leased),
    ("succeeded", TrialState::Succeeded),
    ("diverged", TrialState::Diverged),
    ("failed", TrialState::Failed),
    ("cancelled", TrialState::Cancelled),
];

/// A trial state's name in every output (`running` for a leased trial).
pub fn state_name(s: TrialState) -> &'static str {
    match s {
        TrialState::Unspecified | TrialState::Pending => "pending",
        TrialState::Leased => "running",
        TrialState::Succeeded => "succeeded",
        TrialState::Diverged => "diverged",
        TrialState::Failed => "failed",
        TrialState::Cancelled => "cancelled",
    }
}

/// Parses `--state` values (each may be a comma list): one line naming the bad one.
pub fn parse_states(values: &[String]) -> Result<Vec<TrialState>> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        let state = STATE_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(v))
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                CliError(format!(
                    "--state \"{v}\": expected pending, running (or leased), succeeded, \
                     diverged, failed or cancelled"
                ))
            })?;
        if !out.contains(&state) {
            out.push(state);
        }
    }
    Ok(out)
}

/// Parses `--where key=value` against the sweep's axes: a key that is not an axis, or
/// a value that is not one of its labels, is one line naming the valid ones.
pub fn parse_where(values: &[String], sweep: &Sweep) -> Result<Vec<AxisFilter>> {
    let mut out = Vec::new();
    for v in values {
        let Some((key, label)) = v.split_once('=') else {
            return Err(CliError(format!(
                "--where \"{v}\": expected key=value such as activation=relu"
            )));
        };
        let (key, label) = (key.trim(), label.trim());
        let Some(axis) = sweep.axes.iter().find(|a| a.key == key) else {
            let keys: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
            return Err(CliError(format!(
                "--where {v}: \"{key}\" is not an axis of sweep {}; its axes: {}",
                sweep.id,
                if keys.is_empty() {
                    "none (it has no grid)".to_owned()
                } else {
                    keys.join(", ")
                }
            )));
        };
        if !axis.labels.iter().any(|l| l == label) {
            return Err(CliError(format!(
                "--where {v}: \"{label}\" is not a value of axis {key}; its values: {}",
                axis.labels.join(", ")
            )));
        }
        out.push(AxisFilter {
            key: key.to_owned(),
            label: label.to_owned(),
        });
    }
    Ok(out)
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Text (a label, a state, a name).
    Text(String),
    /// A count or an id.
    Int(u64),
    /// A measured number (NaN and infinities included).
    Num(f64),
    /// Names (the flagged verdicts): `;`-joined in CSV, an array in JSON.
    List(Vec<String>),
    /// No value (an unfinished trial's final loss).
    Missing,
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            // The shortest text that reads back as the same f64; `NaN`, `inf`, `-inf`.
            Cell::Num(x) => x.to_string(),
            Cell::List(v) => v.join(";"),
            Cell::Missing => String::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(n) => Value::from(*n),
            Cell::Num(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Cell::List(v) => Value::from(v.clone()),
            Cell::Missing => Value::Null,
        }
    }
}

const TRIAL_COLUMNS: [&str; 19] = [
    "attempt",
    "failures",
    "lost",
    "worker",
    "epochs_done",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "penalty",
    "best_val_epoch",
    "best_val_accuracy",
    "diverged_epoch",
    "flagged",
    "seconds",
    "error",
    "key",
];

const EPOCH_COLUMNS: [&str; 9] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "penalty",
    "seconds",
];

const LAYER_COLUMNS: [&str; 9] = [
    "epoch",
    "layer",
    "weight_mean",
    "weight_std",
    "grad_norm",
    "grad_max_abs",
    "update_ratio",
    "change_since_start",
    "dead_fraction",
];

/// The header: `index`, the axis keys, `seed`, `state`, then per `what`: trials —
/// attempt, failures, lost, worker, epochs_done, the final epoch's train/val/test
/// loss and accuracy and penalty, best_val_epoch, best_val_accuracy, diverged_epoch,
/// flagged, seconds, error, key; epochs — epoch, the six numbers, penalty, seconds;
/// layers — epoch, layer, weight_mean, weight_std, grad_norm, grad_max_abs,
/// update_ratio, change_since_start, dead_fraction.
pub fn columns(what: What, axes: &[Axis]) -> Vec<String> {
    let mut out = vec!["index".to_owned()];
    out.extend(axes.iter().map(|a| a.key.clone()));
    out.extend(["seed".to_owned(), "state".to_owned()]);
    let rest: &[&str] = match what {
        What::Trials => &TRIAL_COLUMNS,
        What::Epochs => &EPOCH_COLUMNS,
        What::Layers => &LAYER_COLUMNS,
    };
    out.extend(rest.iter().map(|c| c.to_string()));
    out
}

fn leading(s: &TrialSummary) -> Vec<Cell> {
    let mut out = vec![Cell::Int(u64::from(s.index))];
    out.extend(s.values.iter().map(|v| Cell::Text(v.clone())));
    out.extend([Cell::Int(s.seed), Cell::Text(state_name(s.state()).into())]);
    out
}

fn worker(s: &TrialSummary) -> String {
    match (s.worker_name.is_empty(), s.worker_id) {
        (false, _) => s.worker_name.clone(),
        (true, 0) => String::new(),
        (true, id) => format!("worker {id}"),
    }
}

/// A trial's row (see [`columns`]).
pub fn trial_row(s: &TrialSummary) -> Vec<Cell> {
    let f = s.final_epoch.as_ref();
    let num = |get: fn(&EpochReport) -> f64| f.map_or(Cell::Missing, |e| Cell::Num(get(e)));
    let mut out = leading(s);
    out.extend([
        Cell::Int(u64::from(s.attempt)),
        Cell::Int(u64::from(s.failures)),
        Cell::Int(u64::from(s.lost)),
        Cell::Text(worker(s)),
        Cell::Int(u64::from(s.epochs)),
        num(|e| e.train_loss),
        num(|e| e.train_accuracy),
        num(|e| e.val_loss),
        num(|e| e.val_accuracy),
        num(|e| e.test_loss),
        num(|e| e.test_accuracy),
        num(|e| e.penalty),
        s.best_val_epoch
            .as_ref()
            .map_or(Cell::Missing, |e| Cell::Int(u64::from(e.epoch))),
        s.best_val_epoch
            .as_ref()
            .map_or(Cell::Missing, |e| Cell::Num(e.val_accuracy)),
        if s.diverged_epoch == 0 {
            Cell::Missing
        } else {
            Cell::Int(u64::from(s.diverged_epoch))
        },
        Cell::List(s.flagged.clone()),
        Cell::Num(s.seconds),
        Cell::Text(s.error.replace('\n', " ")),
        Cell::Text(s.key.clone()),
    ]);
    out
}

/// An epoch's row.
pub fn epoch_row(s: &TrialSummary, e: &EpochReport) -> Vec<Cell> {
    let mut out = leading(s);
    out.push(Cell::Int(u64::from(e.epoch)));
    out.extend(
        [
            e.train_loss,
            e.train_accuracy,
            e.val_loss,
            e.val_accuracy,
            e.test_loss,
            e.test_accuracy,
            e.penalty,
            e.seconds,
        ]
        .map(Cell::Num),
    );
    out
}

/// A layer's row at an epoch.
pub fn layer_row(s: &TrialSummary, e: &EpochReport, l: &LayerDiagnostics) -> Vec<Cell> {
    let mut out = leading(s);
    out.extend([Cell::Int(u64::from(e.epoch)), Cell::Text(l.layer.clone())]);
    out.extend(
        [
            l.weight_mean,
            l.weight_std,
            l.grad_norm,
            l.grad_max_abs,
            l.update_ratio,
            l.change_since_start,
        ]
        .map(Cell::Num),
    );
    out.push(l.dead_fraction.map_or(Cell::Missing, Cell::Num));
    out
}

fn csv_error(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        kind => std::io::Error::other(format!("{kind:?}")),
    }
}

/// Rows written to `W` in one format, row by row.
pub struct Rows<W: Write> {
    inner: RowsInner<W>,
    columns: Vec<String>,
    /// Rows written so far.
    pub count: u64,
}

enum RowsInner<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json {
        w: std::io::BufWriter<W>,
        array: bool,
    },
}

impl<W: Write> Rows<W> {
    /// Starts the output: the CSV header, or `[` of a JSON array.
    pub fn new(w: W, format: RowFormat, columns: Vec<String>) -> std::io::Result<Rows<W>> {
        let inner = match format {
            RowFormat::Csv => {
                let mut c = csv::Writer::from_writer(w);
                c.write_record(&columns).map_err(csv_error)?;
                RowsInner::Csv(Box::new(c))
            }
            RowFormat::Jsonl | RowFormat::Json => {
                let mut w = std::io::BufWriter::new(w);
                let array = format == RowFormat::Json;
                if array {
                    w.write_all(b"[")?;
                }
                RowsInner::Json { w, array }
            }
        };
        Ok(Rows {
            inner,
            columns,
            count: 0,
        })
    }

    /// Writes one row (as many cells as columns).
    pub fn row(&mut self, cells: &[Cell]) -> std::io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        match &mut self.inner {
            RowsInner::Csv(c) => c
                .write_record(cells.iter().map(Cell::csv))
                .map_err(csv_error)?,
            RowsInner::Json { w, array } => {
                // Keys in column order (a serde_json map would sort them).
                let mut line = String::from(match (*array, self.count) {
                    (false, _) => "{",
                    (true, 0) => "\n{",
                    (true, _) => ",\n{",
                });
                for (i, (k, v)) in self.columns.iter().zip(cells).enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&serde_json::Value::from(k.as_str()).to_string());
                    line.push(':');
                    line.push_str(&v.json().to_string());
                }
                line.push('}');
                if !*array {
                    line.push('\n');
                }
                w.write_all(line.as_bytes())?;
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Ends the output (`]` of a JSON array) and flushes it.
    pub fn finish(self) -> std::io::Result<W> {
        match self.inner {
            RowsInner::Csv(c) => c.into_inner().map_err(|e| e.into_error()),
            RowsInner::Json { mut w, array } => {
                if array {
                    w.write_all(if self.count == 0 { b"]\n" } else { b"\n]\n" })?;
                }
                w.into_inner().map_err(|e| e.into_error())
            }
        }
    }
}

/// Where the rows go: stdout, or a temporary file renamed to `path` when complete.
enum Sink {
    Stdout(std::io::Stdout),
    File {
        file: std::fs::File,
        partial: PathBuf,
        path: PathBuf,
    },
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

impl Sink {
    fn open(out: Option<&Path>) -> Result<Sink> {
        let Some(path) = out else {
            return Ok(Sink::Stdout(std::io::stdout()));
        };
        let name = path
            .file_name()
            .ok_or_else(|| CliError(format!("--out {}: not a file name", path.display())))?;
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(format!(".partial-{}", std::process::id()));
        let partial = path.with_file_name(partial_name);
        let file = std::fs::File::create(&partial)
            .map_err(|e| CliError(format!("--out {}: cannot write there: {e}", path.display())))?;
        Ok(Sink::File {
            file,
            partial,
            path: path.to_owned(),
        })
    }

    /// Renames a complete file into place.
    fn commit(self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(mut s) => s.flush(),
            Sink::File {
                file,
                partial,
                path,
            } => {
                file.sync_all()?;
                drop(file);
                std::fs::rename(&partial, &path)
            }
        }
    }

    /// Removes an incomplete file.
    fn discard(self) {
        if let Sink::File { file, partial, .. } = self {
            drop(file);
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// A stream's messages, one at a time.
enum Source {
    Trials(tonic::Streaming<TrialSummary>),
    Exports(tonic::Streaming<gradsweep_proto::TrialExport>),
}

impl Source {
    async fn open(
        client: &mut Client,
        id: u64,
        what: What,
        states: &[TrialState],
        filters: Vec<AxisFilter>,
    ) -> Result<Source> {
        let states: Vec<i32> = states.iter().map(|s| *s as i32).collect();
        let r = if what == What::Trials {
            client
                .sweeps
                .list_trials(ListTrialsRequest {
                    sweep_id: id,
                    states,
                    filters,
                })
                .await
                .map(|r| Source::Trials(r.into_inner()))
        } else {
            client
                .sweeps
                .export_trials(ExportTrialsRequest {
                    sweep_id: id,
                    states,
                    filters,
                    layers: what == What::Layers,
                })
                .await
                .map(|r| Source::Exports(r.into_inner()))
        };
        r.map_err(|s| client.status(s))
    }

    async fn next(
        &mut self,
    ) -> std::result::Result<Option<(TrialSummary, Vec<EpochReport>)>, tonic::Status> {
        Ok(match self {
            Source::Trials(s) => s.message().await?.map(|t| (t, Vec::new())),
            Source::Exports(s) => s
                .message()
                .await?
                .map(|x| (x.summary.unwrap_or_default(), x.epochs)),
        })
    }
}

/// How an export ended, short of success.
enum Stop {
    /// The reader went away (`| head`): end quietly.
    Closed,
    /// One line to print.
    Error(CliError),
}

/// Streams the selected trials' rows of `what` into `rows`; the number of trials.
async fn pump<W: Write>(
    client: &Client,
    source: &mut Source,
    what: What,
    rows: &mut Rows<W>,
    target: &str,
) -> std::result::Result<u64, Stop> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Stop::Closed
        } else {
            Stop::Error(CliError(format!("cannot write {target}: {e}")))
        }
    };
    let mut trials = 0;
    while let Some((s, epochs)) = source
        .next()
        .await
        .map_err(|e| Stop::Error(client.status(e)))?
    {
        trials += 1;
        match what {
            What::Trials => rows.row(&trial_row(&s)).map_err(io)?,
            What::Epochs => {
                for e in &epochs {
                    rows.row(&epoch_row(&s, e)).map_err(io)?;
                }
            }
            What::Layers => {
                for e in &epochs {
                    for l in &e.layers {
                        rows.row(&layer_row(&s, e, l)).map_err(io)?;
                    }
                }
            }
        }
    }
    Ok(trials)
}

/// What to export and how.
pub struct ExportArgs<'a> {
    /// The sweep.
    pub id: u64,
    /// Rows of trials, epochs or layers.
    pub what: What,
    /// CSV, JSON lines or a JSON array.
    pub format: RowFormat,
    /// The file, else stdout.
    pub out: Option<&'a Path>,
    /// `--state` values (names, comma lists).
    pub states: &'a [String],
    /// `--where key=value` values.
    pub filters: &'a [String],
}

/// `sweep export` (and `sweep trials --format csv|json`): streams the rows; returns the
/// line to print afterwards (empty when the rows went to stdout).
pub async fn export(client: &mut Client, a: ExportArgs<'_>) -> Result<String> {
    let states = parse_states(a.states)?;
    let sweep = crate::get_sweep(client, a.id).await?;
    let filters = parse_where(a.filters, &sweep)?;
    let mut source = Source::open(client, a.id, a.what, &states, filters).await?;
    let target = a
        .out
        .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let sink = Sink::open(a.out)?;
    let mut rows = match Rows::new(sink, a.format, columns(a.what, &sweep.axes)) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(String::new()),
        Err(e) => {
            if let Some(path) = a.out {
                remove_partials(path);
            }
            return Err(CliError(format!("cannot write {target}: {e}")));
        }
    };
    let pumped = pump(client, &mut source, a.what, &mut rows, &target).await;
    let count = rows.count;
    let finished = rows.finish();
    match (pumped, finished) {
        (Ok(trials), Ok(sink)) => {
            let to_file = matches!(sink, Sink::File { .. });
            match sink.commit() {
                Ok(()) if to_file => Ok(format!(
                    "wrote {count} rows ({trials} trials of sweep {}) to {target}\n",
                    a.id
                )),
                Ok(()) => Ok(String::new()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(String::new()),
                Err(e) => Err(CliError(format!("cannot write {target}: {e}"))),
            }
        }
        (Err(Stop::Closed), _) => Ok(String::new()),
        (_, Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(String::new()),
        (Err(Stop::Error(e)), Ok(sink)) => {
            sink.discard();
            Err(e)
        }
        (Err(Stop::Error(e)), Err(_)) => {
            if let Some(path) = a.out {
                remove_partials(path);
            }
            Err(e)
        }
        (Ok(_), Err(e)) => {
            if let Some(path) = a.out {
                remove_partials(path);
            }
            Err(CliError(format!("cannot write {target}: {e}")))
        }
    }
}

/// Removes this process's partial file for `path` (when its writer could not be
/// recovered to discard it).
fn remove_partials(path: &Path) {
    if let Some(name) = path.file_name() {
        let mut partial = std::ffi::OsString::from(".");
        partial.push(name);
        partial.push(format!(".partial-{}", std::process::id()));
        let _ = std::fs::remove_file(path.with_file_name(partial));
    }
}

/// `sweep trials` as a table: one row per trial (index, axis values, seed, state,
/// failures/lost, worker, final train/val/test loss and accuracy, flagged verdicts).
pub async fn trials_table(
    client: &mut Client,
    id: u64,
    states: &[String],
    filters: &[String],
) -> Result<String> {
    let states = parse_states(states)?;
    let sweep = crate::get_sweep(client, id).await?;
    let filters = parse_where(filters, &sweep)?;
    let mut source = Source::open(client, id, What::Trials, &states, filters).await?;
    let mut rows = Vec::new();
    while let Some((s, _)) = source.next().await.map_err(|e| client.status(e))? {
        rows.push(table_row(&s));
    }
    if rows.is_empty() {
        return Ok(format!(
            "no trial of sweep {id} matches (it has {} trials)\n",
            sweep.trial_count
        ));
    }
    let mut header: Vec<String> = vec!["#".into()];
    header.extend(sweep.axes.iter().map(|a| a.key.clone()));
    header.extend(
        [
            "seed",
            "state",
            "fail/lost",
            "worker",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "test_loss",
            "test_acc",
            "flagged",
        ]
        .map(String::from),
    );
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = render::grid(&h, &rows);
    let _ = std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "{} of {} trials; `sweep trial {id}/<#>` shows one\n",
            rows.len(),
            sweep.trial_count
        ),
    );
    Ok(out)
}

fn table_row(s: &TrialSummary) -> Vec<String> {
    let mut out = vec![s.index.to_string()];
    out.extend(s.values.iter().cloned());
    let state = match s.state() {
        TrialState::Diverged if s.diverged_epoch > 0 => {
            format!("diverged@{}", s.diverged_epoch)
        }
        st => state_name(st).to_owned(),
    };
    out.extend([
        s.seed.to_string(),
        state,
        format!("{}/{}", s.failures, s.lost),
        match worker(s) {
            w if w.is_empty() => "-".to_owned(),
            w => w,
        },
    ]);
    let f = s.final_epoch.as_ref();
    for get in [
        |e: &EpochReport| e.train_loss,
        |e: &EpochReport| e.train_accuracy,
        |e: &EpochReport| e.val_loss,
        |e: &EpochReport| e.val_accuracy,
        |e: &EpochReport| e.test_loss,
        |e: &EpochReport| e.test_accuracy,
    ] {
        out.push(f.map_or_else(|| "-".to_owned(), |e| format!("{:.4}", get(e))));
    }
    out.push(if s.flagged.is_empty() {
        "-".to_owned()
    } else {
        s.flagged.join(",")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TrialSummary {
        TrialSummary {
            index: 7,
            values: vec!["relu".into(), "[16, 8]".into()],
            seed: 2,
            state: TrialState::Diverged as i32,
            diverged_epoch: 3,
            flagged: vec!["divergence".into(), "stagnant_loss".into()],
            final_epoch: Some(EpochReport {
                epoch: 2,
                train_loss: 0.5,
                val_loss: f64::NAN,
                test_loss: f64::INFINITY,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn axes() -> Vec<Axis> {
        vec![
            Axis {
                key: "activation".into(),
                labels: vec!["relu".into()],
            },
            Axis {
                key: "hidden".into(),
                labels: vec!["[16, 8]".into()],
            },
        ]
    }

    #[test]
    fn csv_quotes_labels_and_writes_non_finite_numbers_as_pandas_reads_them() {
        let mut rows =
            Rows::new(Vec::new(), RowFormat::Csv, columns(What::Trials, &axes())).unwrap();
        rows.row(&trial_row(&summary())).unwrap();
        let text = String::from_utf8(rows.finish().unwrap()).unwrap();
        let mut lines = text.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("index,activation,hidden,seed,state,attempt,")
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("7,relu,\"[16, 8]\",2,diverged,0,0,0,,0,0.5,0,NaN,0,inf,0,0,,,3,divergence;stagnant_loss,"),
            "{row}"
        );
    }

    #[test]
    fn json_lines_keep_column_order_and_write_null_for_non_finite() {
        let mut rows =
            Rows::new(Vec::new(), RowFormat::Jsonl, columns(What::Trials, &axes())).unwrap();
        rows.row(&trial_row(&summary())).unwrap();
        rows.row(&trial_row(&summary())).unwrap();
        let text = String::from_utf8(rows.finish().unwrap()).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line = text.lines().next().unwrap();
        assert!(
            line.starts_with(
                "{\"index\":7,\"activation\":\"relu\",\"hidden\":\"[16, 8]\",\"seed\":2,"
            ),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["val_loss"].is_null() && v["test_loss"].is_null());
        assert_eq!(v["train_loss"], 0.5);
        assert_eq!(v["flagged"][1], "stagnant_loss");
        let mut rows =
            Rows::new(Vec::new(), RowFormat::Json, columns(What::Trials, &axes())).unwrap();
        rows.row(&trial_row(&summary())).unwrap();
        rows.row(&trial_row(&summary())).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&rows.finish().unwrap()).unwrap();
        assert_eq!(doc.as_array().unwrap().len(), 2);
        let empty = Rows::new(Vec::new(), RowFormat::Json, vec![]).unwrap();
        assert_eq!(empty.finish().unwrap(), b"[]\n");
    }

    #[test]
    fn states_and_filters_are_checked_with_one_line_naming_the_valid_ones() {
        assert_eq!(
            parse_states(&[
                "succeeded,diverged".into(),
                "leased".into(),
                "running".into()
            ])
            .unwrap(),
            [
                TrialState::Succeeded,
                TrialState::Diverged,
                TrialState::Leased
            ]
        );
        let e = parse_states(&["done".into()]).unwrap_err().0;
        assert!(
            e.contains("--state \"done\"") && e.contains("succeeded"),
            "{e}"
        );
        let sweep = Sweep {
            id: 4,
            axes: axes(),
            ..Default::default()
        };
        assert_eq!(
            parse_where(&["activation=relu".into()], &sweep).unwrap(),
            [AxisFilter {
                key: "activation".into(),
                label: "relu".into()
            }]
        );
        let e = parse_where(&["act=relu".into()], &sweep).unwrap_err().0;
        assert!(e.contains("its axes: activation, hidden"), "{e}");
        let e = parse_where(&["activation=gelu".into()], &sweep)
            .unwrap_err()
            .0;
        assert!(e.contains("its values: relu"), "{e}");
        assert!(
            parse_where(&["relu".into()], &sweep)
                .unwrap_err()
                .0
                .contains("key=value")
        );
    }
}
