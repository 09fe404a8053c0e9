//! Shared test support: an in-process `basin_broker::Broker` on 127.0.0.1:0
//! with a temporary data directory, running on its own runtime thread so the
//! tests may block (as rdkafka calls do) without starving it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use basin_broker::{Broker, BrokerConfig};
use tempfile::TempDir;

/// A running broker; stopped and its data removed on drop.
pub struct TestBroker {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestBroker {
    /// Start a broker that creates topics only when asked to (CreateTopics).
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            auto_create_topics: false,
            ..BrokerConfig::default()
        };
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || serve(config, addr_tx, stop_rx));
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("broker did not bind within 30 s");
        TestBroker {
            addr,
            shutdown: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `host:port` for `bootstrap.servers` / `--brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

fn serve(
    config: BrokerConfig,
    addr_tx: mpsc::Sender<SocketAddr>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("broker runtime");
    runtime.block_on(async move {
        let broker = Broker::bind(config).await.expect("broker binds");
        addr_tx.send(broker.local_addr()).expect("test is waiting");
        let stop = async {
            let _ = stop_rx.await;
        };
        broker.serve(stop).await.expect("broker serves cleanly");
    });
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
