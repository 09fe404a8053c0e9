//! `basin-broker`: a Kafka wire-protocol broker over `basin-log`, with
//! consumer groups, idempotent producers and transactions. Start one with
//! [`Broker::bind`] and [`Broker::serve`].

pub mod codec;
mod config;
mod errors;
mod groups;
mod handlers;
mod offsets_log;
mod server;
mod state;
mod transactions;
mod txn_log;

pub use config::BrokerConfig;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use crate::state::BrokerState;

/// Errors that stop the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] basin_log::LogError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound broker, ready to serve.
pub struct Broker {
    listener: tokio::net::TcpListener,
    state: Arc<BrokerState>,
}

impl Broker {
    /// Open the data directory (recovering logs) and bind the listener.
    pub async fn bind(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        let advertised = (host, i32::from(addr.port()));
        let state = BrokerState::open(config, advertised)?;
        Ok(Broker {
            listener,
            state: Arc::new(state),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serve until `shutdown` completes, then close every log cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let addr = self.local_addr();
        server::announce(&self.state, addr);
        let tasks = [
            tokio::spawn(server::accept_loop(self.listener, self.state.clone())),
            tokio::spawn(server::flush_loop(self.state.clone())),
            tokio::spawn(server::retention_loop(self.state.clone())),
            tokio::spawn(server::group_loop(self.state.clone())),
            tokio::spawn(server::txn_loop(self.state.clone())),
        ];
        shutdown.await;
        for task in &tasks {
            task.abort();
        }
        info!("shutting down: flushing and closing logs");
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(std::io::Error::other)?;
        Ok(())
    }
}
