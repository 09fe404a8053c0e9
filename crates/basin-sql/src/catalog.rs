//! The persistent part of the catalog: definitions of external tables
//! (CSV, JSON, Parquet files, topics and PostgreSQL tables), kept as their
//! `CREATE EXTERNAL TABLE` statements in `<data-dir>/catalog/tables.json` and
//! replayed into every session. Lake tables need no entry: the lake folder
//! is their catalog.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use datafusion::sql::parser::CreateExternalTable;
use parking_lot::Mutex;

use crate::error::{IoContext, Result, SqlError};

#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    tables: Mutex<BTreeMap<String, String>>,
}

impl Catalog {
    pub fn open(data_dir: &Path) -> Result<Catalog> {
        let dir = data_dir.join("catalog");
        fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join("tables.json");
        let tables = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SqlError::Catalog {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).at(&path),
        };
        Ok(Catalog {
            path,
            tables: Mutex::new(tables),
        })
    }

    /// Every stored definition, by table name.
    pub fn definitions(&self) -> BTreeMap<String, String> {
        self.tables.lock().clone()
    }

    pub fn put(&self, name: &str, ddl: String) -> Result<()> {
        let mut tables = self.tables.lock();
        tables.insert(name.to_string(), ddl);
        self.persist(&tables)
    }

    pub fn remove(&self, name: &str) -> Result<bool> {
        let mut tables = self.tables.lock();
        let removed = tables.remove(name).is_some();
        if removed {
            self.persist(&tables)?;
        }
        Ok(removed)
    }

    fn persist(&self, tables: &BTreeMap<String, String>) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        fs::write(
            &tmp,
            serde_json::to_string_pretty(tables).expect("serializes"),
        )
        .at(&tmp)?;
        fs::rename(&tmp, &self.path).at(&self.path)
    }
}

/// Render a `CREATE EXTERNAL TABLE` with everything that defines the table
/// (DataFusion's own `Display` leaves out columns and options).
pub fn render_external(c: &CreateExternalTable) -> String {
    let mut sql = format!("CREATE EXTERNAL TABLE {}", c.name);
    if !c.columns.is_empty() {
        let cols: Vec<String> = c.columns.iter().map(|col| col.to_string()).collect();
        sql.push_str(&format!(" ({})", cols.join(", ")));
    }
    sql.push_str(&format!(" STORED AS {}", c.file_type));
    if !c.table_partition_cols.is_empty() {
        sql.push_str(&format!(
            " PARTITIONED BY ({})",
            c.table_partition_cols.join(", ")
        ));
    }
    let locations: Vec<String> = c
        .locations
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', "''")))
        .collect();
    sql.push_str(&format!(" LOCATION {}", locations.join(", ")));
    if !c.options.is_empty() {
        let opts: Vec<String> = c
            .options
            .iter()
            .map(|(k, v)| format!("'{}' {v}", k.replace('\'', "''")))
            .collect();
        sql.push_str(&format!(" OPTIONS ({})", opts.join(", ")));
    }
    sql
}
