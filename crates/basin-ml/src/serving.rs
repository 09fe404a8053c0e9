//! Which version each caller scores with. A [`Models`] pins the production
//! version of a model the first time it is asked for and keeps it until
//! [`Models::refresh`]: a batch query refreshes when it starts, a stream
//! pipeline at each checkpoint (so every row between two checkpoints uses
//! one version, and a replay after a crash uses the same one), the HTTP
//! server on every request. A pinned reference (`fare_model@3`) is never
//! refreshed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::model::Model;
use crate::registry::{ModelRef, Registry};

/// The registry and the versions in use.
#[derive(Debug)]
pub struct Models {
    registry: Registry,
    pins: Mutex<HashMap<String, (u32, Arc<Model>)>>,
}

impl Models {
    pub fn open(data_dir: &Path) -> Arc<Models> {
        Arc::new(Models {
            registry: Registry::open(data_dir),
            pins: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The model `r` names and its version.
    pub fn get(&self, r: &ModelRef) -> Result<(u32, Arc<Model>)> {
        if r.version.is_none() {
            if let Some(hit) = self.pins.lock().expect("pins").get(&r.name) {
                return Ok(hit.clone());
            }
        }
        let v = self.registry.resolve(r)?;
        let model = self.registry.load(&r.name, &v)?;
        if r.version.is_none() {
            let mut pins = self.pins.lock().expect("pins");
            let hit = pins.entry(r.name.clone()).or_insert((v.version, model));
            return Ok(hit.clone());
        }
        Ok((v.version, model))
    }

    /// Re-resolve every pinned production version; the models that moved,
    /// as (name, old version, new version). A model that can no longer be
    /// resolved keeps its pin (and the error is logged), so a bad promotion
    /// does not stop a running pipeline.
    pub fn refresh(&self) -> Vec<(String, u32, u32)> {
        let names: Vec<(String, u32)> = {
            let pins = self.pins.lock().expect("pins");
            pins.iter().map(|(n, (v, _))| (n.clone(), *v)).collect()
        };
        let mut moved = Vec::new();
        for (name, old) in names {
            let r = ModelRef {
                name: name.clone(),
                version: None,
            };
            let fresh = self
                .registry
                .resolve(&r)
                .and_then(|v| Ok((v.version, self.registry.load(&name, &v)?)));
            match fresh {
                Ok((new, model)) if new != old => {
                    self.pins
                        .lock()
                        .expect("pins")
                        .insert(name.clone(), (new, model));
                    tracing::info!(model = %name, from = old, to = new, "scoring with a newly promoted version");
                    moved.push((name, old, new));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(model = %name, error = %e, "keeping version {old}"),
            }
        }
        moved
    }
}
