//! cargo-fuzz target: arbitrary bytes to `basin_log::batch::validate` and to
//! `PartitionLog::append` (then reads, restart and truncation) in a temp dir.
//! See `basin_fuzz::record_batch::run` for what is checked.

#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let dir = root
        .path()
        .join(RUN.fetch_add(1, Ordering::Relaxed).to_string());
    let _ = basin_fuzz::record_batch::run(data, &dir);
});
