//! The TCP side: accept connections, read length-prefixed frames, hand them
//! to the handlers in order, write responses. One bad connection never
//! affects another; background tasks flush logs, apply retention, expire
//! group members and abort transactions past their timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::codec::{self, CodecError};
use crate::handlers;
use crate::state::BrokerState;

/// Accept connections until the task is dropped.
pub async fn accept_loop(listener: TcpListener, state: Arc<BrokerState>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(reason) = serve_connection(stream, &state).await {
                        warn!(%peer, %reason, "closed connection");
                    } else {
                        debug!(%peer, "client disconnected");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: &BrokerState) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(256 * 1024, read);
    let mut frame = BytesMut::new();
    loop {
        let len = match read.read_i32().await {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if len < 0 || len as usize > state.config.max_request_bytes {
            return Err(format!(
                "request size {len} is outside 0..={} (max_request_bytes)",
                state.config.max_request_bytes
            ));
        }
        frame.resize(len as usize, 0);
        read.read_exact(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        let reply = match codec::decode_request(&frame) {
            Ok(request) => handlers::handle(state, request).await?,
            Err(CodecError::UnsupportedVersion {
                api: kafka_protocol::messages::ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => Some(codec::api_versions_fallback(correlation_id)),
            Err(e) => return Err(e.to_string()),
        };
        if let Some(bytes) = reply {
            write.write_all(&bytes).await.map_err(|e| e.to_string())?;
        }
    }
}

/// Flush logs whose interval is due, every 50 ms.
pub async fn flush_loop(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let store = state.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush_due(Instant::now())).await;
    }
}

/// Apply retention periodically.
pub async fn retention_loop(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(state.config.retention_check_interval);
    loop {
        tick.tick().await;
        let store = state.store.clone();
        let now_ms = now_millis();
        let _ = tokio::task::spawn_blocking(move || store.enforce_retention(now_ms)).await;
    }
}

/// Expire group members whose session timed out and finish overdue rebalances.
pub async fn group_loop(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        state.groups.tick(Instant::now());
    }
}

/// Abort transactions past their timeout (and retry prepared ones).
pub async fn txn_loop(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let s = state.clone();
        let ended =
            tokio::task::spawn_blocking(move || s.txns.expire(&s.txn_context(), now_millis()))
                .await
                .unwrap_or(0);
        if ended > 0 {
            state.notify_appended();
        }
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Log where the broker listens.
pub fn announce(state: &BrokerState, addr: std::net::SocketAddr) {
    info!(%addr, data_dir = %state.config.data_dir.display(), topics = state.store.topics().len(), "broker ready");
}
