//! `coordinator`: serves sweeps to clients and trials to workers, storing everything in
//! sled. Prints `listening on <addr>` on stdout once it accepts connections. Any error
//! is one line on stderr (`coordinator: …`) and exit status 1; a storage failure (a
//! full disk) makes it exit so that a supervisor restarts it on the intact database.

use clap::Parser;
use gradsweep_coordinator::{LeasePolicy, ServerConfig, Store, run};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Expands sweeps into trials, leases them to workers, stores every epoch and result.
#[derive(Parser)]
#[command(name = "coordinator", version)]
struct Args {
    /// Address to listen on, `host:port` (a name such as `localhost:7070` is resolved;
    /// port 0: any free port; the one chosen is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// The database directory (created if absent; reopened and resumed if present).
    #[arg(long)]
    db: PathBuf,
    /// A lease lapses this long after its last heartbeat: `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Attempts ending in the trial's own error before it is FAILED.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Attempts lost to the infrastructure (a dead worker's expired lease, a
    /// hand-back, a dataset mismatch) before a trial is FAILED.
    #[arg(long, default_value_t = 20)]
    max_lost: u32,
    /// The most trials one sweep may expand into.
    #[arg(long, default_value_t = gradsweep_spec::DEFAULT_MAX_TRIALS)]
    max_trials: u64,
}

/// `500ms`, `30s`, `2m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Duration::from_secs_f64(x * scale)),
        _ => Err(format!(
            "expected a positive duration such as 30s, 500ms or 2m, got \"{s}\""
        )),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(line) = serve(args).await {
        eprintln!("coordinator: {line}");
        // Not a return from main: dropping the runtime would wait for calls stuck in
        // a failed database.
        std::process::exit(1);
    }
}

/// Everything after flag parsing; an error is the one line to print.
async fn serve(args: Args) -> Result<(), String> {
    if args.max_attempts == 0 {
        return Err("--max-attempts: must be at least 1".into());
    }
    if args.max_lost == 0 {
        return Err("--max-lost: must be at least 1".into());
    }
    let policy = LeasePolicy {
        ttl_ms: args.lease_ttl.as_millis().max(1) as u64,
        max_attempts: args.max_attempts,
        max_lost: args.max_lost,
    };
    let store = Store::open(&args.db, policy).map_err(|e| match e {
        gradsweep_coordinator::Error::Locked(_) => e.to_string(),
        e => format!("--db {}: {e}", args.db.display()),
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let config = ServerConfig {
        max_trials: args.max_trials,
        ..ServerConfig::default()
    };
    run(listener, Arc::new(store), config, shutdown)
        .await
        .map_err(|e| match e {
            gradsweep_coordinator::Error::StorageFailed(cause) => format!(
                "exiting: the database's storage failed ({cause}); restart the coordinator \
                 on the same --db once the disk has space: it resumes from the last write \
                 that succeeded"
            ),
            e => e.to_string(),
        })
}
