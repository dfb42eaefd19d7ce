//! `sweep`: submit sweeps to a coordinator, follow them and compare their results. Thin:
//! flags here, everything else in `gradsweep_coordinator::cli`.

use clap::{Parser, Subcommand};
use gradsweep_client::{self as cli, CliError, DEFAULT_COORDINATOR, render};
use std::path::PathBuf;
use std::process::ExitCode;

/// Submit hyper-parameter sweeps to a gradsweep coordinator, follow them, and compare
/// their results as tables (mean ± std over seeds, aggregated by the coordinator).
#[derive(Parser)]
#[command(
    name = "sweep",
    version,
    after_help = "Examples:\n  sweep submit examples/sweeps/activations.toml\n  sweep ls\n  sweep status 1\n  sweep table 1 --by activation,batchnorm --metric test_acc\n  sweep trials 1 --state diverged,failed\n  sweep trial 1/0\n  sweep export 1 --what epochs --format csv --out epochs.csv\n  sweep retry 1\n  sweep --coordinator https://coord.lab:7070 --ca ca.pem --token-file client.token ls\n\nThe coordinator's address: --coordinator, else GRADSWEEP_COORDINATOR, else http://127.0.0.1:7070.\nThe token: --token-file, else GRADSWEEP_TOKEN, else none."
)]
struct Args {
    /// The coordinator's address (`http://host:port`, `host:port`, or
    /// `https://host:port` when it serves TLS).
    #[arg(long, global = true, env = "GRADSWEEP_COORDINATOR", default_value = DEFAULT_COORDINATOR)]
    coordinator: String,
    /// The client token's file (one line), when the coordinator requires one
    /// (its --client-token-file) [default: the token in GRADSWEEP_TOKEN].
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the coordinator's TLS certificate, for an
    /// https:// address [default: the system's roots].
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a sweep spec (TOML); prints the new sweep's id and its number of trials.
    ///
    /// The coordinator checks the spec and expands its grid × seeds into trials; a bad
    /// spec is refused with one line naming the field.
    #[command(
        after_help = "Examples:\n  sweep submit examples/sweeps/activations.toml\n  sweep submit examples/sweeps/activations.toml --watch"
    )]
    Submit {
        /// The spec file.
        spec: PathBuf,
        /// Then follow it as `sweep watch` does.
        #[arg(long)]
        watch: bool,
    },
    /// List every sweep with its state and how many trials are done.
    ///
    /// --format json: {"sweeps": [{id, name, state, created_unix_ms, trial_count, done,
    /// counts: {pending, running, succeeded, diverged, failed, cancelled}, axes: [{key,
    /// labels}], seeds, dataset_fingerprint}]}, newest first.
    #[command(
        after_help = "Examples:\n  sweep ls\n  sweep ls --format json | jq '.sweeps[0].counts'"
    )]
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// A sweep's state, axes, seeds and trial counts per state.
    ///
    /// --format json: the keys of `sweep ls --format json`'s sweeps, plus eta_seconds
    /// (null unless running with trials done) and running: [{index, worker_id, worker,
    /// device, lease_deadline_unix_ms}].
    #[command(
        after_help = "Examples:\n  sweep status 1\n  sweep status 1 --format json | jq .counts"
    )]
    Status {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Follow a sweep live: a bar for the whole sweep and one per running trial (its
    /// configuration, epochs, last train loss and validation accuracy); ends, with a
    /// summary line naming `sweep table`, when the sweep is finished or cancelled.
    ///
    /// When stdout is not a terminal (a Slurm log, `> file`), it prints one line per
    /// trial that finishes while it watches instead of bars.
    #[command(
        after_help = "Examples:\n  sweep watch 1\n  sweep watch 1 > watch.log      # trial 5 activation=relu seed=1: succeeded, train_loss …"
    )]
    Watch {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
    },
    /// Cancel a sweep: its pending and running trials become cancelled; results kept.
    #[command(after_help = "Example:\n  sweep cancel 1")]
    Cancel {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
    },
    /// Requeue a sweep's FAILED trials (with --diverged, its DIVERGED ones too) so that
    /// workers train them again.
    ///
    /// A trial is FAILED when its own attempts kept failing (`failures` reached the
    /// coordinator's --max-attempts) or when it lost too many leases to dead or
    /// unreachable workers (`lost` reached --max-lost). Retrying resets both counts and
    /// starts a new attempt; the earlier attempts stay in the trial's history (`sweep
    /// trial`). Look at why they failed first: a trial that failed for its own reason
    /// (a bad dataset path, more memory than the workers have) fails again. A DIVERGED
    /// trial is a result (its loss became NaN or infinite): retry it only after
    /// something outside the trial changed, since the same trial diverges the same way.
    #[command(
        after_help = "Examples:\n  sweep retry 1               requeued 2 FAILED trials of sweep 1\n  sweep retry 1 --diverged    FAILED and DIVERGED trials\n  sweep trial 1/17            why trial 17's attempts ended (history)"
    )]
    Retry {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// Requeue DIVERGED trials too.
        #[arg(long)]
        diverged: bool,
    },
    /// Compare configurations: one row per combination of the chosen axes, each metric
    /// as mean ± std over the succeeded trials of the row, with the number of trials
    /// (seeds, and the axes not chosen) behind each cell.
    ///
    /// Diverged, failed, cancelled and unfinished trials count in no cell; each row says
    /// how many it has. Metrics: train_loss,
    /// train_accuracy, val_loss, val_accuracy, test_loss, test_accuracy, penalty
    /// (`test_acc` is short for `test_accuracy`).
    ///
    /// --verdicts adds, per row, how many of its finished trials (succeeded or diverged)
    /// each verdict flagged: stagnant_loss, vanishing_gradients, dead_relu,
    /// exploding_gradients, divergence (`sweep trial` shows each one's criterion and
    /// the values that crossed it).
    #[command(
        after_help = "Examples:\n  sweep table 1\n  sweep table 1 --by activation,init --metric test_acc,val_acc --sort test_acc\n  sweep table 1 --verdicts            # stagnant_loss 2/2 … per row\n  sweep table 1 --epoch best-val --format csv > results.csv\n  sweep table 1 --effects"
    )]
    Table {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// Axes that make the rows (default: every axis of the sweep).
        #[arg(long, value_delimiter = ',')]
        by: Vec<String>,
        /// Metrics to show (default: train/val/test loss and accuracy).
        #[arg(long, value_delimiter = ',')]
        metric: Vec<String>,
        /// Which epoch of each trial counts: its last, or its best validation accuracy.
        #[arg(long, default_value = "final", value_parser = ["final", "best-val"])]
        epoch: String,
        /// Order the rows by this metric's mean (highest accuracy, lowest loss first);
        /// it must be among the metrics shown.
        #[arg(long)]
        sort: Option<String>,
        /// Output format: table, md, csv or json (csv and json at full precision).
        #[arg(long, default_value = "table")]
        format: render::Format,
        /// Instead: each axis's effect on one metric (default test_accuracy): its
        /// values' means over all other axes, axes ranked by the spread of those means.
        #[arg(long, conflicts_with = "by")]
        effects: bool,
        /// Add each verdict's count per row (flagged/finished trials).
        #[arg(long, conflicts_with = "effects")]
        verdicts: bool,
    },
    /// Run the built-in demo: a coordinator on a temporary database, local workers, a
    /// 32-trial sweep (activation × init × batch norm × regularisation on a deep net, two
    /// seeds), then the tables, each axis's effect and the vanishing-gradient verdicts.
    ///
    /// Everything it starts is stopped at the end. It needs the `coordinator` and
    /// `worker` binaries beside `sweep` (cargo build --release --workspace). Given
    /// --coordinator on the command line, it runs the sweep there (its local workers
    /// join that coordinator; --workers 0 starts none) instead of starting its own.
    #[command(
        after_help = "Examples:\n  sweep demo\n  sweep demo --workers 2 --device cpu\n  sweep demo --keep demo-db --report demo.html\n  sweep --coordinator http://127.0.0.1:7070 demo --workers 1"
    )]
    Demo {
        /// Local worker processes to start.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Where the workers train: auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// The dataset of the built-in sweep.
        #[arg(long, default_value = "synthetic:glyphs-small")]
        dataset: String,
        /// Epochs per trial.
        #[arg(long, default_value_t = 8)]
        epochs: u32,
        /// Keep the database in DIR (DIR/db) and print the commands that open it again.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Write the demo sweep's HTML report (as `sweep report`) to FILE.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// The worker token's file (one line) for the local workers, when --coordinator
        /// names a coordinator that requires one (its --worker-token-file).
        #[arg(long, value_name = "FILE")]
        worker_token_file: Option<PathBuf>,
    },
    /// Draw a sweep's figures: five files (SVG or PNG) in --out, from every succeeded
    /// and diverged trial, aggregated per configuration (mean ± std over seeds).
    ///
    /// 1-loss: train and validation loss per epoch, one panel per value of the --by
    /// axes; 2-weight-stats: each layer's weight mean and std per epoch;
    /// 3-gradient-norms: each layer's gradient norm per epoch (log axis: a vanishing
    /// layer sits far below); 4-weight-change: each layer's change since its initial
    /// weights and its update ratio in the first and last epoch (log axis);
    /// 5-accuracy: test accuracy per configuration, and train vs test per regulariser.
    /// A diverged trial's lines end at its last finite epoch, marked ×.
    #[command(
        after_help = "Examples:\n  sweep plot 1 --out figs\n  sweep plot 1 --out figs --by activation,batchnorm --format png"
    )]
    Plot {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// The directory to write the figures into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Axes whose values get a panel each in the loss figure [default: activation
        /// when the sweep varies it, else its first axis].
        #[arg(long, value_delimiter = ',')]
        by: Vec<String>,
        /// svg or png.
        #[arg(long, default_value = "svg")]
        format: cli::plot::ImageFormat,
    },
    /// Write a sweep's report: one self-contained HTML page (inline SVG figures, no
    /// network) walking the study — activations, vanishing gradients three ways with
    /// each verdict beside its figure, remedies, regularisers, the gradient check per
    /// layer, the spec, the dataset fingerprint and the software version.
    #[command(after_help = "Example:\n  sweep report 1 --out report.html")]
    Report {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// The HTML file to write (written whole, through a temporary file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// One trial: its state, attempts and their history, config, per-epoch metrics,
    /// layer diagnostics, verdicts and gradient check.
    ///
    /// `failures` counts attempts that ended in the trial's own error, `lost` the leases
    /// lost to the infrastructure (a worker that died or could not reach the
    /// coordinator, a hand-back, a dataset mismatch); the history says how each
    /// earlier attempt ended, on which worker, and why.
    ///
    /// --format json: sweep_id, index, key, state, values {axis: label}, seed, attempt,
    /// failures, lost, worker_id, error, config_toml, history [{attempt, ended, worker_id,
    /// worker, reason, ended_unix_ms}], epochs [{epoch, train_loss, train_accuracy,
    /// val_loss, val_accuracy, test_loss, test_accuracy, penalty, seconds, layers
    /// [{layer, weight_mean, weight_std, grad_norm, grad_max_abs, update_ratio,
    /// change_since_start, dead_fraction}]}], result (null until finished: outcome,
    /// diverged_epoch, worker, device, seconds, dataset_fingerprint, verdicts,
    /// gradcheck_initial, gradcheck, gradcheck_skipped). NaN and infinities are null.
    #[command(
        after_help = "Examples:\n  sweep trial 1/17                  (trial 17 of sweep 1)\n  sweep trial 1/17 --format json | jq '.epochs[-1].val_accuracy'"
    )]
    Trial {
        /// `<sweep id>/<trial index>`.
        #[arg(value_parser = cli::parse_trial_ref)]
        trial: (u64, u32),
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// One row per trial of a sweep: its index, axis values, seed, state, failures/lost
    /// attempts, worker, final train/val/test loss and accuracy, and flagged verdicts.
    ///
    /// --state keeps trials in these states (repeat it or give a comma list): pending,
    /// running (or leased), succeeded, diverged, failed, cancelled. --where keeps trials
    /// whose axis KEY has the value VALUE, written as the sweep shows it (`sweep status`
    /// lists each axis's values); several --where must all hold. --format csv and json
    /// have the columns of `sweep export --what trials`.
    #[command(
        after_help = "Examples:\n  sweep trials 1\n  sweep trials 1 --state diverged,failed\n  sweep trials 1 --where activation=sigmoid --where batchnorm=false\n  sweep trials 1 --format csv > trials.csv\n  sweep trials 1 --format json | jq '.[] | select(.flagged | length > 0) | .index'"
    )]
    Trials {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// Keep trials in these states (repeatable, or a comma list).
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Keep trials whose axis KEY has value VALUE (repeatable; all must hold).
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Output format: table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Every trial's data in long format for pandas, polars or R: one row per trial
    /// (--what trials), per trial and epoch (epochs), or per trial, epoch and Linear
    /// layer (layers), streamed as the coordinator sends it.
    ///
    /// Columns: index, one per axis (named by its key, holding the trial's value),
    /// seed, state, then: trials — attempt, failures, lost, worker, epochs_done, the
    /// final epoch's train_loss, train_accuracy, val_loss, val_accuracy, test_loss,
    /// test_accuracy, penalty, best_val_epoch, best_val_accuracy, diverged_epoch,
    /// flagged (`;`-separated in CSV, a list in JSON), seconds, error, key; epochs —
    /// epoch, the six numbers, penalty, seconds; layers — epoch, layer, weight_mean,
    /// weight_std, grad_norm, grad_max_abs, update_ratio, change_since_start,
    /// dead_fraction. CSV writes NaN as `NaN` and infinities as `inf`/`-inf`, JSON lines
    /// as null; a missing value is empty / null. With --out the file appears only when
    /// complete. --state and --where select trials as for `sweep trials`.
    #[command(
        after_help = "Examples:\n  sweep export 1 --what epochs --format csv --out epochs.csv\n  sweep export 1 --what layers --format jsonl --where activation=sigmoid > layers.jsonl\n  sweep export 1 --what trials --state succeeded --format csv | head\n\nThen, in Python:\n  pandas.read_csv(\"epochs.csv\")       polars.read_ndjson(\"layers.jsonl\")"
    )]
    Export {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
        /// A row per: trials, epochs or layers.
        #[arg(long, default_value = "epochs")]
        what: String,
        /// csv or jsonl (one JSON object per line).
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to FILE (via a temporary file renamed when complete) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Keep trials in these states (repeatable, or a comma list).
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Keep trials whose axis KEY has value VALUE (repeatable; all must hold).
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
}

/// `--format` of `ls`, `status` and `trial`: whether it is json.
fn json_format(format: &str) -> Result<bool, CliError> {
    match format {
        "table" => Ok(false),
        "json" => Ok(true),
        _ => Err(CliError(format!(
            "--format \"{format}\": expected table or json"
        ))),
    }
}

async fn run(args: Args, coordinator_given: bool) -> Result<String, CliError> {
    if let Command::Demo {
        workers,
        device,
        dataset,
        epochs,
        keep,
        report,
        worker_token_file,
    } = &args.command
    {
        return cli::demo::run(cli::demo::Options {
            workers: *workers,
            device: device.clone(),
            dataset: dataset.clone(),
            epochs: *epochs,
            keep: keep.clone(),
            report: report.clone(),
            coordinator: coordinator_given.then(|| {
                (
                    args.coordinator.clone(),
                    args.ca.clone(),
                    args.token_file.clone(),
                )
            }),
            worker_token: worker_token_file.clone(),
        })
        .await;
    }
    let mut client = cli::connect_with(
        &args.coordinator,
        args.ca.as_deref(),
        args.token_file.as_deref(),
    )
    .await?;
    match args.command {
        Command::Submit { spec, watch } => {
            let (text, id) = cli::submit(&mut client, &spec).await?;
            if !watch {
                return Ok(text);
            }
            if cli::print(&text).is_err() {
                return Ok(String::new());
            }
            cli::watch_live(&mut client, id).await
        }
        Command::Watch { id } => cli::watch_live(&mut client, id).await,
        Command::Ls { format } => {
            if json_format(&format)? {
                cli::ls_json(&mut client).await
            } else {
                cli::ls(&mut client).await
            }
        }
        Command::Status { id, format } => {
            if json_format(&format)? {
                cli::status_json(&mut client, id).await
            } else {
                cli::status(&mut client, id).await
            }
        }
        Command::Cancel { id } => cli::cancel(&mut client, id).await,
        Command::Retry { id, diverged } => cli::retry(&mut client, id, diverged).await,
        Command::Table {
            id,
            by,
            metric,
            epoch,
            format,
            effects,
            sort,
            verdicts,
        } => {
            if effects {
                let metric = match metric.as_slice() {
                    [] => "test_accuracy".to_owned(),
                    [m] => cli::metric_name(m),
                    _ => {
                        return Err(CliError(
                            "--effects: give one --metric (default test_accuracy)".into(),
                        ));
                    }
                };
                let e =
                    cli::effects::effects(&mut client, id, &metric, epoch == "best-val").await?;
                return Ok(cli::effects::render(&e, format));
            }
            let mut table = cli::table(&mut client, id, by, metric, epoch == "best-val").await?;
            if let Some(m) = sort {
                render::sort_rows(&mut table, &cli::metric_name(&m)).map_err(CliError)?;
            }
            Ok(render::table_with(&table, format, verdicts))
        }
        Command::Trial {
            trial: (id, n),
            format,
        } => {
            if json_format(&format)? {
                cli::trial_json(&mut client, id, n).await
            } else {
                cli::trial(&mut client, id, n).await
            }
        }
        Command::Trials {
            id,
            state,
            filter,
            format,
        } => {
            let format = match format.as_str() {
                "table" => {
                    return cli::export::trials_table(&mut client, id, &state, &filter).await;
                }
                "csv" => cli::export::RowFormat::Csv,
                "json" => cli::export::RowFormat::Json,
                _ => {
                    return Err(CliError(format!(
                        "--format \"{format}\": expected table, csv or json"
                    )));
                }
            };
            cli::export::export(
                &mut client,
                cli::export::ExportArgs {
                    id,
                    what: cli::export::What::Trials,
                    format,
                    out: None,
                    states: &state,
                    filters: &filter,
                },
            )
            .await
        }
        Command::Export {
            id,
            what,
            format,
            out,
            state,
            filter,
        } => {
            let what = cli::export::parse_what(&what)?;
            let format = cli::export::parse_export_format(&format)?;
            cli::export::export(
                &mut client,
                cli::export::ExportArgs {
                    id,
                    what,
                    format,
                    out: out.as_deref(),
                    states: &state,
                    filters: &filter,
                },
            )
            .await
        }
        Command::Plot {
            id,
            out,
            by,
            format,
        } => cli::plot::plot(&mut client, id, &out, &by, format).await,
        Command::Report { id, out } => cli::report::report(&mut client, id, &out).await,
        Command::Demo { .. } => unreachable!("handled above"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Whether --coordinator was given on the command line (`sweep demo` then uses that
    // coordinator instead of starting its own).
    let matches = <Args as clap::CommandFactory>::command().get_matches();
    let coordinator_given = std::iter::once(&matches)
        .chain(matches.subcommand().map(|(_, m)| m))
        .any(|m| m.value_source("coordinator") == Some(clap::parser::ValueSource::CommandLine));
    let args = match <Args as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    match run(args, coordinator_given).await {
        // A reader that went away (`sweep ls | head -1`) ends the output quietly.
        Ok(out) => match cli::print(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                cli::note(&format!("error: cannot write the output: {e}"));
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            cli::note(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}
