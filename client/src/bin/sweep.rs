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
    after_help = "Examples:\n  sweep submit examples/sweeps/activations.toml\n  sweep ls\n  sweep status 1\n  sweep table 1 --by activation,batchnorm --metric test_acc\n  sweep trial 1/0\n  sweep retry 1\n  sweep --coordinator https://coord.lab:7070 --ca ca.pem --token-file client.token ls\n\nThe coordinator's address: --coordinator, else GRADSWEEP_COORDINATOR, else http://127.0.0.1:7070.\nThe token: --token-file, else GRADSWEEP_TOKEN, else none."
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
    #[command(after_help = "Example:\n  sweep ls")]
    Ls,
    /// A sweep's state, axes, seeds and trial counts per state.
    #[command(after_help = "Example:\n  sweep status 1")]
    Status {
        /// The sweep id (see `sweep ls`).
        #[arg(value_parser = cli::parse_sweep_id)]
        id: u64,
    },
    /// Follow a sweep live: a bar for the whole sweep and one per running trial (its
    /// epochs); ends, with a summary line, when the sweep is finished or cancelled.
    #[command(after_help = "Example:\n  sweep watch 1")]
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
    /// `worker` binaries beside `sweep` (cargo build --release --workspace).
    #[command(after_help = "Examples:\n  sweep demo\n  sweep demo --workers 2 --device cpu")]
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
    },
    /// One trial: its state, attempts and their history, config, per-epoch metrics,
    /// layer diagnostics, verdicts and gradient check.
    ///
    /// `failures` counts attempts that ended in the trial's own error, `lost` the leases
    /// lost to the infrastructure (a worker that died or could not reach the
    /// coordinator, a hand-back, a dataset mismatch); the history says how each
    /// earlier attempt ended, on which worker, and why.
    #[command(after_help = "Example:\n  sweep trial 1/17    (trial 17 of sweep 1)")]
    Trial {
        /// `<sweep id>/<trial index>`.
        #[arg(value_parser = cli::parse_trial_ref)]
        trial: (u64, u32),
    },
}

async fn run(args: Args) -> Result<String, CliError> {
    if let Command::Demo {
        workers,
        device,
        dataset,
        epochs,
    } = &args.command
    {
        return cli::demo::run(*workers, device, dataset, *epochs).await;
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
            cli::watch(&mut client, id).await
        }
        Command::Watch { id } => cli::watch(&mut client, id).await,
        Command::Ls => cli::ls(&mut client).await,
        Command::Status { id } => cli::status(&mut client, id).await,
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
        Command::Trial { trial: (id, n) } => cli::trial(&mut client, id, n).await,
        Command::Demo { .. } => unreachable!("handled above"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
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
