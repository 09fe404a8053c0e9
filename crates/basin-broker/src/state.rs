//! State shared by every connection of a broker: the log store, consumer
//! groups, the transaction coordinator, the producer-id allocator and a
//! signal for long-polling fetches.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use basin_log::LogStore;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::groups::GroupCoordinator;
use crate::transactions::{self, TxnContext, TxnCoordinator};

/// Producer ids are persisted in blocks of this size so a restart never
/// hands out an id twice without an fsync per id.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct BrokerState {
    pub config: BrokerConfig,
    pub store: Arc<LogStore>,
    pub groups: GroupCoordinator,
    pub txns: TxnCoordinator,
    /// Host and port clients should connect to.
    pub advertised: (String, i32),
    pub cluster_id: String,
    appended: watch::Sender<u64>,
    producer_ids: ProducerIds,
}

struct ProducerIds {
    path: PathBuf,
    next: AtomicI64,
    reserved_until: AtomicI64,
    lock: parking_lot::Mutex<()>,
}

impl ProducerIds {
    fn open(path: PathBuf) -> std::io::Result<ProducerIds> {
        let next = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(ProducerIds {
            path,
            next: AtomicI64::new(next),
            reserved_until: AtomicI64::new(next),
            lock: Default::default(),
        })
    }

    fn allocate(&self) -> std::io::Result<i64> {
        let _guard = self.lock.lock();
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        if id >= self.reserved_until.load(Ordering::SeqCst) {
            let until = id + PRODUCER_ID_BLOCK;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, until.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            self.reserved_until.store(until, Ordering::SeqCst);
        }
        Ok(id)
    }
}

impl BrokerState {
    pub fn open(
        config: BrokerConfig,
        advertised: (String, i32),
    ) -> Result<BrokerState, crate::BrokerError> {
        let store = Arc::new(LogStore::open(
            &config.data_dir,
            config.log_defaults.clone(),
        )?);
        // One replica: everything recovered is committed. The stored high
        // watermark is only current after a clean shutdown.
        for topic in store.topics() {
            for log in &topic.partitions {
                log.set_high_watermark(log.log_end_offset());
            }
        }
        let groups = GroupCoordinator::open(store.clone())?;
        let txns = TxnCoordinator::open(store.clone())?;
        let producer_ids = ProducerIds::open(config.data_dir.join("producer-ids"))?;
        let cluster_id = cluster_id(&config)?;
        let state = BrokerState {
            config,
            store,
            groups,
            txns,
            advertised,
            cluster_id,
            appended: watch::channel(0).0,
            producer_ids,
        };
        state.txns.recover(&state.txn_context());
        Ok(state)
    }

    /// What the transaction coordinator needs from the rest of the broker.
    pub fn txn_context(&self) -> TxnContext<'_> {
        TxnContext {
            groups: &self.groups,
            ids: self,
        }
    }

    pub fn next_producer_id(&self) -> std::io::Result<i64> {
        self.producer_ids.allocate()
    }

    /// Wake long-polling fetches: new data was appended.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n += 1);
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

impl transactions::ProducerIds for BrokerState {
    fn next_producer_id(&self) -> std::io::Result<i64> {
        self.producer_ids.allocate()
    }
}

/// The cluster id, made once and kept in the data dir.
fn cluster_id(config: &BrokerConfig) -> std::io::Result<String> {
    let path = config.data_dir.join("cluster-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
    std::fs::write(&path, &id)?;
    Ok(id)
}
