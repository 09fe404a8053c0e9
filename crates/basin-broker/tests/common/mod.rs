//! Shared support for the broker's integration tests: an in-process
//! `Broker` on 127.0.0.1:0 running on its own runtime thread (so tests may
//! block, as rdkafka calls do), restartable on the same data directory, and
//! a raw request/response round trip for protocol-level checks.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use basin_broker::{Broker, BrokerConfig};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A running broker; stopped cleanly on drop (the data dir stays).
pub struct TestBroker {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// Start a broker on `data_dir` that auto-creates topics with
    /// `partitions` partitions.
    pub fn start(data_dir: &Path, partitions: i32) -> TestBroker {
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: PathBuf::from(data_dir),
            default_partitions: partitions,
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
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stop cleanly and wait for the logs to be closed.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        self.halt();
    }
}

/// Send one request at `version` on `conn` and decode its response.
pub fn roundtrip<Req: Encodable, Resp: Decodable>(
    conn: &mut TcpStream,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(i32::from(version) + 1000)
        .with_client_id(Some(StrBytes::from_static_str("basin-test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    conn.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
    conn.write_all(&buf).unwrap();
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)
        .unwrap_or_else(|e| panic!("{api:?} v{version}: no response: {e}"));
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut body).unwrap();
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    assert_eq!(
        header.correlation_id,
        i32::from(version) + 1000,
        "{api:?} v{version}"
    );
    Resp::decode(&mut body, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn txn_id(name: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(name.to_string()))
}
