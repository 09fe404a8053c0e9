//! The `basin` subcommands, one module each.

pub mod consume;
pub mod dag;
pub mod dag_topics;
pub mod gen;
pub mod model;
pub mod pipeline;
pub mod produce;
pub mod sql;
pub mod topic;
pub mod up;
pub mod worker;
