//! The `worker` subcommands: argument handling and terminal output.

mod render;

use anyhow::{Context, Result, bail};
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::device;
use gradsweep_worker::train::Event;
use gradsweep_worker::trial;
use gradsweep_worker::with_backend;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// The CPU thread count (`--threads`, else every core) and a pool of that many threads.
/// Training runs *inside* the pool (`pool.install`), so that a parallel matrix multiply
/// starts on the training thread itself instead of waking the pool from outside and
/// sleeping until it is done — on two cores that hand-off cost a tenth of the time.
fn cpu_pool(threads: Option<usize>) -> Result<(usize, rayon::ThreadPool)> {
    let threads = match threads {
        Some(0) => bail!("--threads: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("gradsweep-cpu-{i}"))
        .build()
        .context("cannot start the thread pool")?;
    Ok((threads, pool))
}

/// Reads a trial file: its size is checked against `gradsweep_spec::limits` before it
/// is read, then it is parsed; every error is one line naming the file.
fn read_trial(path: &Path) -> Result<TrialConfig> {
    TrialConfig::from_file(path).map_err(|e| anyhow::Error::msg(e.to_string()))
}

/// `worker train`.
pub fn train(
    path: &Path,
    json: bool,
    threads: Option<usize>,
    device: &str,
    max_memory: Option<u64>,
) -> Result<ExitCode> {
    let config = read_trial(path)?;
    let (threads, pool) = cpu_pool(threads)?;
    let (device, note) = device::resolve(device, threads)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let data = trial::load_data(&config)?;
    // Before any buffer is allocated: splits that cannot train the trial, and a trial
    // larger than the memory this machine has, are refused with one line.
    trial::check_splits(&config, &data)?;
    gradsweep_worker::memory::check_trial(&config, &data, &device, max_memory)?;

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
        println!("{}", render::header(&config, &data, &device.name()));
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
    let record =
        pool.install(|| with_backend!(&device, |b| trial::run(b, &config, &data, &mut on_event)))?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print!("{}", render::summary(&record));
    }
    Ok(ExitCode::SUCCESS)
}

/// `worker serve`'s coordinator, credentials and log format.
pub struct Connection {
    /// `--coordinator` / `GRADSWEEP_COORDINATOR`.
    pub coordinator: String,
    /// `--token-file` (else `GRADSWEEP_TOKEN`).
    pub token_file: Option<std::path::PathBuf>,
    /// `--ca`.
    pub ca: Option<std::path::PathBuf>,
    /// `--log-format`: `text` or `json`.
    pub log_format: String,
}

/// Logs on stderr: `RUST_LOG` (default `info`), as text or JSON lines.
fn init_logs(format: &str) -> Result<()> {
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) if std::env::var_os("RUST_LOG").is_some() => bail!("RUST_LOG: {e}"),
        Err(_) => tracing_subscriber::EnvFilter::new("info"),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    Ok(())
}

/// `worker serve`: the lease loop until SIGTERM or Ctrl-C, then exit (ending any
/// training still running: its lease has been handed back).
pub fn serve(
    connection: Connection,
    device: String,
    slots: usize,
    name: Option<String>,
    threads: Option<usize>,
    max_memory: Option<u64>,
    pack: usize,
) -> Result<ExitCode> {
    if threads == Some(0) {
        bail!("--threads: must be at least 1");
    }
    init_logs(&connection.log_format)?;
    let coordinator = gradsweep_proto::client::with_scheme(&connection.coordinator);
    let access = gradsweep_worker::serve::Access {
        ca: connection.ca,
        token: gradsweep_proto::client::client_token(connection.token_file.as_deref())
            .map_err(anyhow::Error::msg)?,
    };
    let name = name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".to_owned());
        format!("{host}/{device}")
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let options = gradsweep_worker::serve::ServeOptions {
        coordinator,
        device,
        slots,
        name,
        threads,
        backoff: gradsweep_worker::serve::Backoff::default(),
        max_memory,
        pack,
    };
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        gradsweep_worker::serve::serve_with(options, access, shutdown).await?;
        anyhow::Ok(())
    })?;
    // Training threads may still run an abandoned trial: end them with the process.
    std::process::exit(0)
}

/// The processor's model name, for benchmark reports.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// `worker bench`.
pub fn bench(
    cases: &str,
    n: usize,
    epochs: u32,
    batch: usize,
    threads: Option<usize>,
    device: &str,
    json: bool,
) -> Result<ExitCode> {
    use gradsweep_worker::bench;
    if n == 0 || epochs == 0 || batch == 0 {
        bail!("--n, --epochs and --batch must be at least 1");
    }
    let all = bench::cases();
    let chosen: Vec<bench::BenchCase> = if cases == "all" {
        all
    } else {
        cases
            .split(',')
            .map(|name| {
                all.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
                    anyhow::anyhow!(
                        "--cases: unknown case \"{name}\"; expected all or some of {}",
                        names.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let (threads, pool) = cpu_pool(threads)?;
    let (device, note) = device::resolve(device, threads)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let device_name = device.name();
    let machine = cpu_model();
    // The generated images, refused before they are allocated when they cannot fit.
    let image_bytes = (n as u64 + 1000).saturating_mul(3 * 32 * 32 + 1);
    if let Some(host) = gradsweep_worker::memory::host_available()
        && image_bytes > host
    {
        bail!(
            "--n: {n} CIFAR-shaped samples need about {} of memory but {} are available (MemAvailable)",
            gradsweep_worker::memory::human(image_bytes),
            gradsweep_worker::memory::human(host)
        );
    }
    let data = bench::cifar_shaped(n, 0);
    for case in &chosen {
        let config = bench::config(case, epochs, batch);
        trial::check_splits(&config, &data).map_err(|e| anyhow::anyhow!("--batch: {e}"))?;
        gradsweep_worker::memory::check_trial(&config, &data, &device, None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", case.name))?;
    }
    if !json {
        println!(
            "worker bench: {n} CIFAR-shaped samples (3×32×32 u8), batch {batch}, SGD momentum 0.9"
        );
        println!("device {device_name} on {machine}");
    }
    let mut results = Vec::new();
    for case in &chosen {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(u64::from(epochs) * n.div_ceil(batch) as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(case.name);
        let mut on_event = |e: Event<'_>| {
            if let Event::Batch { .. } = e {
                bar.inc(1);
            }
        };
        let result = pool.install(|| {
            with_backend!(&device, |b| bench::run(
                b,
                case,
                &data,
                epochs,
                batch,
                &mut on_event
            ))
        })?;
        bar.finish_and_clear();
        if !json {
            // The PyTorch command that trains the same model on the same device.
            let anchor = match device {
                device::Device::Cpu(_) => {
                    format!(
                        "python pytorch_mlp_bench.py --threads {threads} --n {n} --batch {batch}"
                    )
                }
                device::Device::Cuda(_) => {
                    format!("python scripts/pytorch_gpu_bench.py --n {n} --batch {batch}")
                }
            };
            println!(
                "{:<13} {:>9.0} samples/s (best of {epochs} epochs; each: {})   PyTorch: {anchor} {}",
                case.name,
                result.best(),
                result
                    .samples_per_s
                    .iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                case.pytorch_args
            );
        }
        results.push(result);
    }
    if json {
        let out = serde_json::json!({
            "device": device_name,
            "machine": machine,
            "threads": threads,
            "n": n,
            "batch": batch,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}
