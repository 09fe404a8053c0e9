//! Basin's orchestrator (the Airflow of the seed documents). A DAG is a
//! TOML file of tasks and their dependencies, run once per data interval of
//! its cron schedule. This crate holds the model and the rules: parsing and
//! validating DAG files ([`dag`]), schedules and data intervals
//! ([`schedule`]), trigger rules ([`rules`]), retry backoff ([`retry`]),
//! templating ([`template`]), and a runner that executes one DAG run
//! ([`run`]) through an [`run::Executor`] (shell commands are built in;
//! SQL and pipeline tasks are run by the binary, which has the engines).
//! State lives in SQLite ([`store`]) or PostgreSQL ([`pg`]); the
//! [`scheduler`] queues runs as their data intervals end and runs them,
//! resuming after a crash. Over PostgreSQL, task instances go through a
//! queue ([`queue`]) that [`worker`]s in other processes claim.
//! It does not depend on DataFusion.

pub mod dag;
mod error;
pub mod pg;
pub mod queue;
pub mod retry;
pub mod rules;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod shell;
pub mod slots;
pub mod store;
pub mod template;
pub mod worker;

pub use error::{FlowError, Result};
