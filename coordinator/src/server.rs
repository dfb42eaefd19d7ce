//! Serving: both services on one listener until `shutdown` resolves, with a background
//! task that requeues expired leases.

use crate::service::{Coordinator, now_ms};
use crate::{Error, Store};
use gradsweep_proto::sweep_service_server::SweepServiceServer;
use gradsweep_proto::worker_service_server::WorkerServiceServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the server needs besides the store.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// The most trials one sweep may expand into.
    pub max_trials: u64,
    /// The largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_trials: gradsweep_spec::DEFAULT_MAX_TRIALS,
            max_message_bytes: 64 << 20,
        }
    }
}

/// Serves `SweepService` and `WorkerService` on `listener` until `shutdown` resolves,
/// then stops accepting, finishes the calls in flight, flushes the store and returns.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let coordinator = Coordinator::new(store.clone(), config.max_trials);
    let ttl = store.policy().ttl_ms;
    let expiry = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis((ttl / 4).clamp(10, 5000)));
            loop {
                tick.tick().await;
                if let Err(e) = store.expire(now_ms()) {
                    eprintln!("coordinator: requeuing expired leases failed: {e}");
                }
            }
        })
    };
    let sweeps = SweepServiceServer::new(coordinator.clone())
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let workers = WorkerServiceServer::new(coordinator)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let served = tonic::transport::Server::builder()
        .add_service(sweeps)
        .add_service(workers)
        // TCP_NODELAY on every accepted connection: tonic sets it only on listeners it
        // binds itself, and with Nagle's algorithm a response's small frames wait for
        // the client's delayed ACK — 40 ms per call, which capped 50 workers at
        // ~1,200 lease + complete cycles a second.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    expiry.abort();
    store.flush().await?;
    served?;
    Ok(())
}
