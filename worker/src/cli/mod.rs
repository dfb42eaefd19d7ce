//! The `worker` subcommands: argument handling and terminal output.

mod render;

use anyhow::{Context, Result, bail};
use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::train::Event;
use gradsweep_worker::trial;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// `worker train`.
pub fn train(path: &Path, json: bool, threads: Option<usize>, device: &str) -> Result<ExitCode> {
    let config = TrialConfig::from_file(path).map_err(anyhow::Error::msg)?;
    match device {
        "auto" | "cpu" => {}
        other => bail!("--device: unknown device \"{other}\"; expected auto or cpu"),
    }
    let threads = match threads {
        Some(0) => bail!("--threads: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("cannot start the thread pool")?;
    let data = trial::load_data(&config)?;
    let backend = CpuBackend::<f32>::new(threads);

    let show = std::io::stderr().is_terminal();
    let bar = if show {
        let bar = ProgressBar::new(u64::from(config.epochs));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} epoch {pos}/{len} [{bar:30}] {msg} {elapsed_precise} (eta {eta})",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    if !json {
        println!(
            "{}",
            render::header(&config, &data, &gradsweep_kernels::Backend::name(&backend))
        );
        println!("{}", render::epoch_header());
    }
    let mut on_event = |event: Event<'_>| match event {
        Event::Batch { done, total, .. } => {
            if done % 8 == 0 || done == total {
                bar.set_message(format!("batch {done}/{total}"));
            }
        }
        Event::Epoch(report) => {
            bar.inc(1);
            if !json {
                bar.suspend(|| println!("{}", render::epoch_line(report)));
            }
        }
    };
    let record = trial::run(&backend, &config, &data, &mut on_event)?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!("{}", render::summary(&record));
    }
    Ok(ExitCode::SUCCESS)
}
