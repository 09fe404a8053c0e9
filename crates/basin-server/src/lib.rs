//! Basin's HTTP API, served by `basin up` next to the Kafka listener:
//!
//! - `GET /api/health` — `{"status": "ok"}`;
//! - `GET /api/keyed/{table}/{key}` — the latest row of `key` in a keyed
//!   table (composite keys: the key columns' values comma-joined, as the
//!   sink writes them);
//! - `GET /api/keyed/{table}?limit=N` — the table's row count and its first
//!   rows in key order;
//! - `POST /v1/models/{name}/predict` — predictions of a model of the
//!   registry in the data dir (`name` or `name@version`) for JSON rows of
//!   its features (see [`models`]).
//!
//! Errors answer `{"error": "..."}` with a 4xx/5xx status.

pub mod error;
pub mod keyed;
pub mod models;

use std::future::Future;
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

pub use error::ApiError;
use keyed::KeyedViews;

/// What the handlers share.
pub struct App {
    keyed: KeyedViews,
    models: Arc<basin_ml::Models>,
}

impl App {
    /// An API reading topics from `brokers` (this node's Kafka listener)
    /// and models from the registry under `data_dir`.
    pub fn new(brokers: &str, data_dir: &FsPath) -> Arc<App> {
        Arc::new(App {
            keyed: KeyedViews::new(brokers),
            models: basin_ml::Models::open(data_dir),
        })
    }
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/keyed/{table}", get(keyed_table))
        .route("/api/keyed/{table}/{key}", get(keyed_row))
        .route("/v1/models/{name}/predict", post(models::predict))
        .with_state(app)
}

/// Serve the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn keyed_row(
    State(app): State<Arc<App>>,
    Path((table, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let view = app.keyed.view(&table).await?;
    match view.get(&key) {
        Some(entry) => Ok(Json(entry.to_json(&key))),
        None => Err(ApiError::NotFound(format!(
            "keyed table '{table}' has no row with key '{key}'"
        ))),
    }
}

#[derive(serde::Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn keyed_table(
    State(app): State<Arc<App>>,
    Path(table): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let view = app.keyed.view(&table).await?;
    let limit = params.limit.unwrap_or(100);
    let rows: Vec<Value> = view
        .first(limit)
        .iter()
        .map(|(key, entry)| entry.to_json(key))
        .collect();
    Ok(Json(serde_json::json!({
        "table": table,
        "keys": view.len(),
        "rows": rows,
    })))
}
