//! Serving: both services on one listener until `shutdown` resolves, with a background
//! task that requeues expired leases. A storage failure ends serving too (see
//! [`run`]). Beside them, without a token: `grpc.health.v1.Health` (SERVING while
//! serving, NOT_SERVING from the moment shutdown begins) and server reflection (v1 and
//! v1alpha), so that Kubernetes gRPC probes, `grpc_health_probe` and `grpcurl` work
//! without the .proto. [`serve`] adds tokens ([`crate::auth`]) and TLS.

use crate::auth::{Role, Tokens};
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
    /// The largest request accepted, in bytes (a larger one is refused by the transport
    /// with a message naming the limit).
    pub max_request_bytes: usize,
    /// The largest answer sent, in bytes.
    pub max_message_bytes: usize,
    /// After a storage failure: how long reads are still served (writes are refused)
    /// before [`run`] returns the failure.
    pub storage_failure_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_trials: gradsweep_spec::DEFAULT_MAX_TRIALS,
            max_request_bytes: 4 << 20,
            max_message_bytes: 64 << 20,
            storage_failure_grace: Duration::from_secs(2),
        }
    }
}

/// Who may connect and how: tokens, TLS, and how long to keep serving (NOT_SERVING)
/// after shutdown begins. The default: no tokens, plaintext, no delay.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// The tokens each role must send ([`Tokens::default`]: none).
    pub tokens: Tokens,
    /// The server's certificate chain and key (PEM); `None`: plaintext.
    pub tls: Option<tonic::transport::Identity>,
    /// After shutdown begins: how long calls are still served while the health service
    /// answers NOT_SERVING, so that load balancers and probes stop sending work first.
    pub drain_delay: Duration,
}

/// [`serve`] with no tokens, no TLS and no drain delay.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve(listener, store, config, Network::default(), shutdown).await
}

/// Serves `SweepService` and `WorkerService` (each behind its role's token), health and
/// reflection on `listener` until `shutdown` resolves; then sets health to NOT_SERVING,
/// keeps serving for `network.drain_delay`, stops accepting, finishes the calls in
/// flight, flushes the store and returns.
///
/// When the store's storage fails (a full disk), sled cannot write again until the
/// database is reopened: the store refuses every write from then on, this keeps
/// serving reads for `storage_failure_grace`, then returns
/// [`Error::StorageFailed`] without waiting for calls stuck in sled, so that the
/// process can exit and be restarted on the intact database.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    network: Network,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let coordinator = Coordinator::new(store.clone(), config.max_trials)?;
    let ttl = store.policy().ttl_ms;
    let expiry = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis((ttl / 4).clamp(10, 5000)));
            loop {
                tick.tick().await;
                if store.failure().is_some() {
                    return;
                }
                if let Err(e) = store.expire(now_ms()) {
                    tracing::error!(error = %e, "requeuing expired leases failed");
                }
            }
        })
    };
    let sweeps = SweepServiceServer::new(coordinator.clone())
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let workers = WorkerServiceServer::new(coordinator)
        .max_decoding_message_size(config.max_request_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let sweeps = tonic::service::interceptor::InterceptedService::new(
        sweeps,
        network.tokens.interceptor(Role::Client),
    );
    let workers = tonic::service::interceptor::InterceptedService::new(
        workers,
        network.tokens.interceptor(Role::Worker),
    );
    // The store is open: every service is SERVING ("" is the whole server).
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SweepServiceServer<Coordinator>>()
        .await;
    health
        .set_serving::<WorkerServiceServer<Coordinator>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(gradsweep_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let drain_delay = network.drain_delay;
    let shutdown = async move {
        shutdown.await;
        // NOT_SERVING before draining: probes and balancers stop sending work while
        // the calls in flight finish.
        for name in [
            "",
            <SweepServiceServer<Coordinator> as tonic::server::NamedService>::NAME,
            <WorkerServiceServer<Coordinator> as tonic::server::NamedService>::NAME,
        ] {
            health
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
        tracing::info!(
            drain_delay_ms = drain_delay.as_millis() as u64,
            "shutting down: health is NOT_SERVING"
        );
        tokio::time::sleep(drain_delay).await;
    };
    let failed = {
        let store = store.clone();
        async move {
            let cause = store.failed().await;
            tokio::time::sleep(config.storage_failure_grace).await;
            cause
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = network.tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::Internal(format!("TLS: {e}")))?;
    }
    let served = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sweeps)
        .add_service(workers)
        // TCP_NODELAY on every accepted connection: tonic sets it only on listeners it
        // binds itself, and with Nagle's algorithm a response's small frames wait for
        // the client's delayed ACK — 40 ms per call, which capped 50 workers at
        // ~1,200 lease + complete cycles a second.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = stopped => {}
                }
            },
        );
    tokio::pin!(served);
    let served = tokio::select! {
        served = &mut served => served,
        cause = failed => {
            // Stop accepting; calls stuck in sled are not waited for.
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut served).await;
            expiry.abort();
            return Err(Error::StorageFailed(cause));
        }
    };
    expiry.abort();
    store.flush().await?;
    served?;
    Ok(())
}
