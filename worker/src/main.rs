//! `worker`: trains gradsweep trials.
//!
//! `worker train <trial.toml>` runs one trial locally, without a coordinator;
//! `worker serve --coordinator URL` leases and trains trials for a coordinator;
//! `worker bench` measures training throughput.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Trains MLP trials and reports what happened inside them: per-epoch losses and
/// accuracies, per-layer weight and gradient statistics, vanishing-gradient and
/// stagnant-loss verdicts, and a numerical gradient check.
#[derive(Parser)]
#[command(name = "worker", version, propagate_version = true)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one trial from a TOML file, locally (no coordinator).
    ///
    /// Shows a progress bar, one line per epoch (train/val/test loss and accuracy),
    /// then each Linear layer's diagnostics, the verdicts with their thresholds and the
    /// gradient check. See examples/*.toml for trial files.
    Train {
        /// The trial file (TOML), e.g. examples/deep-sigmoid.toml.
        trial: PathBuf,
        /// Print the whole record as JSON on stdout instead of the tables.
        #[arg(long)]
        json: bool,
        /// Threads for the CPU backend's matrix multiplies [default: all cores].
        #[arg(long, env = "GRADSWEEP_THREADS")]
        threads: Option<usize>,
        /// Where to train: `auto` (GPU 0 when the CUDA driver loads and sees a GPU,
        /// else the CPU), `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "auto")]
        device: String,
        /// The most host memory the trial may need, e.g. `12G` [default: what the
        /// machine has available]. A trial whose estimate is larger is refused before
        /// it trains.
        #[arg(long, env = "GRADSWEEP_MAX_MEMORY", value_parser = gradsweep_worker::memory::parse_max_memory)]
        max_memory: Option<u64>,
    },
    /// Serve a coordinator: lease trials, train them, report every epoch, repeat.
    ///
    /// Registers with the coordinator, then trains up to --slots trials at once (with
    /// --pack G, up to G packed trials per slot). On
    /// SIGTERM (or Ctrl-C) it leases nothing new, hands its leases back and exits.
    /// Logs each trial it starts and ends on stderr (RUST_LOG, --log-format).
    #[command(
        after_help = "Examples:\n  worker serve --coordinator http://127.0.0.1:7070\n  GRADSWEEP_COORDINATOR=https://coord.lab:7070 GRADSWEEP_TOKEN=$(cat worker.token) \\\n      worker serve --ca ca.pem --device cuda:0"
    )]
    Serve {
        /// The coordinator's URL, e.g. http://127.0.0.1:7070, or https://HOST:PORT when
        /// it serves TLS.
        #[arg(long, env = "GRADSWEEP_COORDINATOR")]
        coordinator: String,
        /// The worker token's file (one line), when the coordinator requires one (its
        /// --worker-token-file) [default: the token in GRADSWEEP_TOKEN].
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// The CA certificate (PEM) that signed the coordinator's TLS certificate, for
        /// an https:// URL [default: the system's roots].
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Log lines on stderr as text or JSON (one object a line); RUST_LOG filters
        /// them (default info).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
        /// Where to train: `auto`, `cpu`, `cuda` or `cuda:N` (as for `train`).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Trials trained at once (they share the CPU threads).
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// The name shown in the coordinator's status [default: <host>/<device>].
        #[arg(long)]
        name: Option<String>,
        /// CPU threads in all, split between the slots (each gets threads / slots, at
        /// least 1) [default: all cores, so each slot gets cores / slots].
        #[arg(long, env = "GRADSWEEP_THREADS")]
        threads: Option<usize>,
        /// The most host memory one trial may need, e.g. `12G`, for a machine shared by
        /// several workers [default: what the machine has available]. A trial whose
        /// estimate is larger is given back as failed, with the estimate, before it
        /// trains.
        #[arg(long, env = "GRADSWEEP_MAX_MEMORY", value_parser = gradsweep_worker::memory::parse_max_memory)]
        max_memory: Option<u64>,
        /// Trials each slot leases at once and trains packed in lockstep as one model
        /// (those sharing data, layer sizes, batch sizes, epochs and optimiser kind;
        /// activation, init, batch norm, regularisers, hyper-parameters and seeds may
        /// differ), 1 to 64; a trial that fits no group trains alone. 1: one trial at a
        /// time.
        #[arg(long, env = "GRADSWEEP_PACK", default_value_t = 1, value_name = "G")]
        pack: usize,
    },
    /// Measure training throughput (samples/s) on CIFAR-shaped synthetic data.
    ///
    /// Trains the configurations of the CPU-speed goal — 3072-512-256-10 ReLU,
    /// the same with batch norm + dropout 0.2, and the deep 3072-(256×5)-10 sigmoid
    /// net — with batch 128 and SGD (lr 0.01, momentum 0.9), and prints each one's
    /// best-epoch training throughput with the matching PyTorch anchor command:
    ///
    ///   python ../shared/bench/pytorch_mlp_bench.py --threads 2 --hidden 512,256 --act relu
    Bench {
        /// Which configurations: relu, bn-dropout, deep-sigmoid (comma-separated) or all.
        #[arg(long, default_value = "all")]
        cases: String,
        /// Training samples (45,000 = CIFAR-10's train split after validation).
        #[arg(long, default_value_t = 45_000)]
        n: usize,
        /// Epochs per configuration; the best one is reported.
        #[arg(long, default_value_t = 2)]
        epochs: u32,
        /// Batch size.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Threads for the CPU backend [default: all cores].
        #[arg(long, env = "GRADSWEEP_THREADS")]
        threads: Option<usize>,
        /// Where to train: `auto`, `cpu`, `cuda` or `cuda:N` (as for `train`).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Train G trials of each configuration (seeds 0…G−1) packed in lockstep as one
        /// model, and report their aggregate samples/s beside the same G trials alone.
        #[arg(long, value_name = "G")]
        pack: Option<usize>,
        /// With --pack: run the G trials alone on this many slots at once, each with a
        /// device backend of its own (1: one after the other; 0: skip them).
        #[arg(long, default_value_t = 1, requires = "pack")]
        slots: usize,
    },
}

/// `worker bench --pack G`: the chosen cases, packed and alone ([`bench::pack_cli`]).
#[allow(clippy::too_many_arguments)]
fn bench_pack(
    cases: &str,
    n: usize,
    epochs: u32,
    batch: usize,
    threads: Option<usize>,
    device: &str,
    json: bool,
    groups: usize,
    slots: usize,
) -> anyhow::Result<ExitCode> {
    use gradsweep_worker::bench;
    anyhow::ensure!(
        n > 0 && epochs > 0 && batch > 0,
        "--n, --epochs and --batch must be at least 1"
    );
    let all = bench::cases();
    let chosen = if cases == "all" {
        all
    } else {
        cases
            .split(',')
            .map(|name| {
                all.iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("--cases: unknown case \"{name}\""))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    bench::pack_cli(
        &chosen, n, epochs, batch, groups, slots, threads, device, json,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Like other Unix tools, `train` and `bench` end quietly when stdout's reader goes
    // away (`worker train t.toml | head`) instead of panicking on the broken pipe. Not
    // `serve`: it writes to sockets, and a write to a connection the coordinator reset
    // (a killed coordinator) would then kill the worker with SIGPIPE instead of
    // returning an error it retries; it never writes to stdout, and its log lines
    // ignore a closed stderr.
    if !matches!(args.command, Command::Serve { .. }) {
        // SAFETY: restoring the default disposition of SIGPIPE at the start of main,
        // before any thread exists, has no memory-safety preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match args.command {
        Command::Train {
            trial,
            json,
            threads,
            device,
            max_memory,
        } => cli::train(&trial, json, threads, &device, max_memory),
        Command::Serve {
            coordinator,
            token_file,
            ca,
            log_format,
            device,
            slots,
            name,
            threads,
            max_memory,
            pack,
        } => cli::serve(
            cli::Connection {
                coordinator,
                token_file,
                ca,
                log_format,
            },
            device,
            slots,
            name,
            threads,
            max_memory,
            pack,
        ),
        Command::Bench {
            cases,
            n,
            epochs,
            batch,
            threads,
            device,
            json,
            pack: None,
            slots: _,
        } => cli::bench(&cases, n, epochs, batch, threads, &device, json),
        Command::Bench {
            cases,
            n,
            epochs,
            batch,
            threads,
            device,
            json,
            pack: Some(groups),
            slots,
        } => bench_pack(
            &cases, n, epochs, batch, threads, &device, json, groups, slots,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
