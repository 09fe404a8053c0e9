//! Limits across runs: named pools (`pool = "db"` on tasks, sizes given
//! to the scheduler) and per-task concurrency (`max_active = 1`: at most
//! one instance of the task runs at once, whatever the run). An attempt
//! takes its slots before it starts and gives them back when it ends.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::dag::Task;

/// Slots in use, by key, against their limits.
#[derive(Debug, Default)]
pub struct Slots {
    pools: HashMap<String, usize>,
    used: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

/// Held slots, given back on drop.
pub struct Held<'a> {
    slots: &'a Slots,
    keys: Vec<String>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut used = self.slots.used.lock().expect("lock");
        for k in &self.keys {
            if let Some(n) = used.get_mut(k) {
                *n = n.saturating_sub(1);
            }
        }
        self.slots.freed.notify_all();
    }
}

impl Slots {
    /// Pools and their sizes; tasks in other pools are not limited by one.
    pub fn new(pools: HashMap<String, usize>) -> Slots {
        Slots {
            pools,
            ..Slots::default()
        }
    }

    /// The limits `task` of DAG `dag` is under.
    fn limits(&self, dag: &str, task: &Task) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        if let Some(pool) = &task.pool {
            if let Some(size) = self.pools.get(pool) {
                out.push((format!("pool:{pool}"), *size));
            }
        }
        if let Some(max) = task.max_active {
            out.push((format!("task:{dag}.{}", task.id), max));
        }
        out
    }

    /// Wait until every limit of the task has room, and take a slot of each.
    pub fn acquire(&self, dag: &str, task: &Task) -> Held<'_> {
        let limits = self.limits(dag, task);
        let mut used = self.used.lock().expect("lock");
        while limits
            .iter()
            .any(|(k, max)| used.get(k).copied().unwrap_or(0) >= (*max).max(1))
        {
            used = self.freed.wait(used).expect("lock");
        }
        for (k, _) in &limits {
            *used.entry(k.clone()).or_default() += 1;
        }
        Held {
            slots: self,
            keys: limits.into_iter().map(|(k, _)| k).collect(),
        }
    }
}
