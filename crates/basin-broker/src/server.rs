//! The TCP side: accept connections, read length-prefixed frames, hand them
//! to the handlers in order, write responses. One bad connection never
//! affects another; background tasks flush logs, apply retention, expire
//! group members and abort transactions past their timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
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

/// Read-ahead for length prefixes and small requests, which often arrive
/// several per segment.
const READ_BUFFER: usize = 64 * 1024;
/// The rest of a frame is read from the socket straight into the frame's
/// own buffer, not through the read-ahead, from this size on.
const DIRECT_READ_MIN: usize = 16 * 1024;

async fn serve_connection(stream: TcpStream, state: &BrokerState) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(READ_BUFFER, read);
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
        let frame = read_frame(&mut read, len as usize)
            .await
            .map_err(|e| e.to_string())?;
        let reply = match codec::decode_request(frame) {
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

/// Read a `len`-byte frame body into a buffer of its own, which the decoded
/// request then slices: a produce request's records reach the log without
/// a copy. What the read-ahead already holds is copied; a large rest is
/// read from the socket directly.
async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut BufReader<R>,
    len: usize,
) -> std::io::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(len);
    let take = read.buffer().len().min(len);
    frame.extend_from_slice(&read.buffer()[..take]);
    read.consume(take);
    while frame.len() < len {
        let want = len - frame.len();
        let mut dst = (&mut frame).limit(want);
        // Bypassing the read-ahead is only right while it is empty.
        let n = if want >= DIRECT_READ_MIN && read.buffer().is_empty() {
            read.get_mut().read_buf(&mut dst).await?
        } else {
            read.read_buf(&mut dst).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(frame.freeze())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_of_every_size_are_read_whole_and_in_order() {
        let sizes = [
            0,
            5,
            3 * READ_BUFFER + 17,
            9,
            DIRECT_READ_MIN,
            40,
            READ_BUFFER - 3,
        ];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        // A small pipe: the reader sees the frames in pieces.
        let (mut tx, rx) = tokio::io::duplex(7_000);
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            for f in sent {
                tx.write_i32(f.len() as i32).await.unwrap();
                tx.write_all(&f).await.unwrap();
            }
        });
        let mut read = BufReader::with_capacity(READ_BUFFER, rx);
        for want in &frames {
            let len = read.read_i32().await.unwrap() as usize;
            let got = read_frame(&mut read, len).await.unwrap();
            assert_eq!(&got[..], &want[..]);
        }
        writer.await.unwrap();
        let err = read_frame(&mut read, 1).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
