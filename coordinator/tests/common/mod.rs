//! What the coordinator's gRPC tests share: a coordinator on loopback over a temporary
//! store, its two clients, and the worker calls every test makes.

#![allow(dead_code)]

use gradsweep_coordinator::{LeasePolicy, ServerConfig, Store, run};
use gradsweep_proto::sweep_service_client::SweepServiceClient;
use gradsweep_proto::worker_service_client::WorkerServiceClient;
use gradsweep_proto::*;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Server {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

pub struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn start(tag: &str, policy: LeasePolicy) -> Server {
    start_with(tag, policy, |_| {}).await
}

/// A server on a store that `fill` prepared.
pub async fn start_with(tag: &str, policy: LeasePolicy, fill: impl FnOnce(&Store)) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "gradsweep-coordinator-test-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir, policy).unwrap());
    fill(&store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        run(listener, store, ServerConfig::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        url,
        stop: Some(stop),
        done,
        _dir: TempDir(dir),
    }
}

impl Server {
    pub async fn clients(&self) -> (SweepServiceClient<Channel>, WorkerServiceClient<Channel>) {
        let channel = Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        (
            SweepServiceClient::new(channel.clone()),
            WorkerServiceClient::new(channel),
        )
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.done).await.unwrap();
    }
}

pub fn lref(l: &TrialLease, worker: u64) -> LeaseRef {
    LeaseRef {
        sweep_id: l.sweep_id,
        index: l.index,
        lease_id: l.lease_id,
        worker_id: worker,
    }
}

pub async fn register(workers: &mut WorkerServiceClient<Channel>, name: &str, slots: u32) -> u64 {
    workers
        .register(RegisterRequest {
            name: name.into(),
            device: "cpu".into(),
            slots,
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id
}
