//! `coordinator`: serves sweeps to clients and trials to workers, storing everything in
//! sled. Prints `listening on <addr>` on stdout once it accepts connections; logs go to
//! stderr (`RUST_LOG`, `--log-format`). Any error at start is one line on stderr
//! (`coordinator: …`) and exit status 1; a storage failure (a full disk) makes it exit
//! so that a supervisor restarts it on the intact database.

use clap::Parser;
use gradsweep_coordinator::{LeasePolicy, Network, ServerConfig, Store, Tokens, serve as run};
use gradsweep_proto::client::read_token_file;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Expands sweeps into trials, leases them to workers, stores every epoch and result.
#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    after_help = "Examples:\n  coordinator --db sweeps.db\n  coordinator --db /var/lib/gradsweep --listen 0.0.0.0:7070 \\\n      --tls-cert server.pem --tls-key server.key \\\n      --client-token-file client.token --worker-token-file worker.token\n\nOn a non-loopback address both tokens and TLS are required (or --insecure).\nHealth (grpc.health.v1.Health) and reflection need no token.\nsled's page cache: --cache-mb (or GRADSWEEP_CACHE_MB), default 32.\nLogs: RUST_LOG (default info), e.g. RUST_LOG=debug or RUST_LOG=gradsweep_coordinator=info."
)]
struct Args {
    /// Address to listen on, `host:port` (a name such as `localhost:7070` is resolved;
    /// port 0: any free port; the one chosen is printed). A non-loopback address needs
    /// both token files and TLS, or --insecure.
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
    /// A file holding the token clients (`sweep`) must send, on one line; clients may
    /// then call only SweepService.
    #[arg(long, value_name = "FILE")]
    client_token_file: Option<PathBuf>,
    /// A file holding the token workers (`worker serve`) must send, on one line;
    /// workers may then call only WorkerService.
    #[arg(long, value_name = "FILE")]
    worker_token_file: Option<PathBuf>,
    /// The server's certificate chain (PEM): serve TLS (clients use https:// and
    /// --ca). Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve a non-loopback address without both tokens and TLS (anyone who reaches
    /// the port may then submit sweeps or report results).
    #[arg(long)]
    insecure: bool,
    /// On SIGTERM: keep serving this long with health NOT_SERVING before draining
    /// (e.g. `5s` behind a Kubernetes Service), then finish the calls in flight.
    #[arg(long, default_value = "0s", value_parser = parse_delay)]
    drain_delay: Duration,
    /// sled's page cache, in MiB: the bound on the memory the database keeps (the
    /// process adds ~40 bytes per pending trial and a little per lease and sweep).
    #[arg(long, env = "GRADSWEEP_CACHE_MB", default_value_t = gradsweep_coordinator::store::DEFAULT_CACHE_MB, value_name = "MIB")]
    cache_mb: u64,
    /// Log lines on stderr as text or JSON (one object a line); RUST_LOG filters them.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// `0s` or a [`parse_duration`].
fn parse_delay(s: &str) -> Result<Duration, String> {
    if s.trim_end_matches(['m', 's']).trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// Logs on stderr: `RUST_LOG` (default `info`), as text or JSON lines.
fn init_logs(format: &str) -> Result<(), String> {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().or_else(|e| {
        if std::env::var_os("RUST_LOG").is_some() {
            Err(format!("RUST_LOG: {e}"))
        } else {
            Ok(tracing_subscriber::EnvFilter::new("info"))
        }
    })?;
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

/// The PEM file of `flag`, checked to hold `marker` (e.g. `CERTIFICATE`).
fn read_pem(flag: &str, path: &std::path::Path, marker: &str) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN ") || !text.contains(marker) {
        return Err(format!(
            "{flag} {}: not a PEM {} (no -----BEGIN …{marker}----- line)",
            path.display(),
            marker.to_lowercase()
        ));
    }
    Ok(pem)
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
    if let Err(line) = init_logs(&args.log_format) {
        eprintln!("coordinator: {line}");
        std::process::exit(1);
    }
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
    if !(16..=1 << 20).contains(&args.cache_mb) {
        return Err(format!(
            "--cache-mb: {}, must be 16 to {} (MiB)",
            args.cache_mb,
            1 << 20
        ));
    }
    let policy = LeasePolicy {
        ttl_ms: args.lease_ttl.as_millis().max(1) as u64,
        max_attempts: args.max_attempts,
        max_lost: args.max_lost,
    };
    let read = |flag: &str, path: &Option<PathBuf>| {
        path.as_deref()
            .map(|p| read_token_file(flag, p))
            .transpose()
    };
    let tokens = Tokens::new(
        read("--client-token-file", &args.client_token_file)?,
        read("--worker-token-file", &args.worker_token_file)?,
    )?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tonic::transport::Identity::from_pem(
            read_pem("--tls-cert", cert, "CERTIFICATE")?,
            read_pem("--tls-key", key, "PRIVATE KEY")?,
        )),
        _ => None,
    };
    if let Some(identity) = &tls {
        // Parsed here, so that a bad certificate or key stops the start with one line.
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity.clone()))
            .map_err(|e| {
                format!(
                    "--tls-cert/--tls-key: cannot serve TLS with them ({})",
                    gradsweep_proto::client::root_cause(&e)
                )
            })?;
    }
    let options = gradsweep_coordinator::store::StoreOptions {
        cache_bytes: args.cache_mb << 20,
    };
    let store = Store::open_with(&args.db, policy, options).map_err(|e| match e {
        gradsweep_coordinator::Error::Locked(_) => e.to_string(),
        e => format!("--db {}: {e}", args.db.display()),
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let guarded = tokens.both() && tls.is_some();
    if !(addr.ip().is_loopback() || args.insecure || guarded) {
        let mut missing = Vec::new();
        if tls.is_none() {
            missing.push("--tls-cert/--tls-key");
        }
        if !tokens.both() {
            missing.push("--client-token-file/--worker-token-file");
        }
        return Err(format!(
            "--listen {}: {addr} is not a loopback address, and without {} anyone who \
             reaches it could submit sweeps and report results: give them, or --insecure \
             to serve it this way anyway",
            args.listen,
            missing.join(" and ")
        ));
    }
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
    tracing::info!(
        %addr,
        db = %args.db.display(),
        tls = tls.is_some(),
        client_token = args.client_token_file.is_some(),
        worker_token = args.worker_token_file.is_some(),
        "serving"
    );
    let network = Network {
        tokens,
        tls,
        drain_delay: args.drain_delay,
    };
    run(listener, Arc::new(store), config, network, shutdown)
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
