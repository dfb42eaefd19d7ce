//! `worker`: trains gradsweep trials.
//!
//! `worker train <trial.toml>` runs one trial locally, without a coordinator.

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
        /// Where to train: `auto` (the GPU when one is usable, else the CPU) or `cpu`.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Train {
            trial,
            json,
            threads,
            device,
        } => cli::train(&trial, json, threads, &device),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
