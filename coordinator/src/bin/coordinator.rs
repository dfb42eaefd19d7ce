//! `coordinator`: serves sweeps to clients and trials to workers, storing everything in
//! sled. Prints `listening on <addr>` on stdout once it accepts connections.

use anyhow::{Context, Result, bail};
use clap::Parser;
use gradsweep_coordinator::{LeasePolicy, ServerConfig, Store, run};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Expands sweeps into trials, leases them to workers, stores every epoch and result.
#[derive(Parser)]
#[command(name = "coordinator", version)]
struct Args {
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// The database directory (created if absent; reopened and resumed if present).
    #[arg(long)]
    db: PathBuf,
    /// A lease lapses this long after its last heartbeat: `30s`, `500ms`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// Attempts a trial gets before it is FAILED.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
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
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.max_attempts == 0 {
        bail!("--max-attempts: must be at least 1");
    }
    let policy = LeasePolicy {
        ttl_ms: args.lease_ttl.as_millis().max(1) as u64,
        max_attempts: args.max_attempts,
    };
    let store =
        Store::open(&args.db, policy).with_context(|| format!("--db {}", args.db.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let config = ServerConfig {
        max_trials: args.max_trials,
        ..ServerConfig::default()
    };
    run(listener, Arc::new(store), config, shutdown).await?;
    Ok(())
}
