//! `basin sql` as a user runs it: output formats, errors that point at the
//! SQL, `--max-rejects` with the rejects table, and a progress bar drawn on
//! a terminal (a pseudo-terminal from `script`) but never into a pipe.

use std::path::Path;
use std::process::{Command, Output};

fn basin(data_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_basin"))
        .arg("sql")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("BASIN_MAX_REJECTS")
        .output()
        .expect("run basin");
    eprintln!(
        "basin sql {args:?} -> {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn statements_files_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = basin(
        &data,
        &[
            "--format",
            "csv",
            "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY a",
        ],
    );
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "a,b\n1,x\n2,y\n");

    let job = dir.path().join("job.sql");
    std::fs::write(
        &job,
        "CREATE TABLE lake.t AS SELECT 1 AS id;\nSELECT id,\n  nope FROM lake.t;\n",
    )
    .unwrap();
    let out = basin(&data, &["-f", job.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("created lake.t with 1 rows"), "{err}");
    assert!(
        err.contains("nope") && err.contains("line 3, column 3"),
        "{err}"
    );
    assert!(err.contains("job.sql"), "the file is named: {err}");
}

#[test]
fn max_rejects_keeps_bad_rows_aside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("fares.csv");
    std::fs::write(&csv, "zone,fare\nJFK,70.5\nLGA,twelve\nEWR,80\n").unwrap();
    let ddl = format!(
        "CREATE EXTERNAL TABLE fares (zone VARCHAR, fare DOUBLE) STORED AS CSV LOCATION '{}'",
        csv.display()
    );
    assert!(basin(&data, &[&ddl]).status.success());

    let load = "CREATE TABLE lake.fares AS SELECT * FROM fares";
    let out = basin(&data, &[load]);
    assert!(!out.status.success(), "one bad row and no --max-rejects");
    let err = text(&out.stderr);
    assert!(
        err.contains("fares.csv line 3: column 'fare': cannot read 'twelve' as Float64"),
        "{err}"
    );

    let out = basin(&data, &["--max-rejects", "1", load]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("created lake.fares with 2 rows; 1 bad input row rejected"));
    let out = basin(
        &data,
        &[
            "--format",
            "csv",
            "SELECT line, reason, raw FROM lake._rejects",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "line,reason,raw\n3,column 'fare': cannot read 'twelve' as Float64,\"LGA,twelve\"\n"
    );

    // A query's rejects are kept too, once its rows are out.
    let out = basin(
        &data,
        &[
            "--max-rejects",
            "5",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM fares",
        ],
    );
    assert_eq!(text(&out.stdout), "n\n2\n");
    assert!(text(&out.stderr).contains("1 bad input row rejected: see lake._rejects"));
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trips = dir.path().join("trips.parquet");
    let gen = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["gen", "taxi", "--rows", "200000", "--out"])
        .arg(&trips)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let ddl = format!(
        "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{}'",
        trips.display()
    );
    assert!(basin(&data, &[&ddl]).status.success());
    let job =
        "CREATE TABLE lake.sorted AS SELECT * FROM trips ORDER BY total_amount, trip_distance";

    // In a pipe: no progress, only the result line.
    let out = basin(&data, &[job]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(!err.contains("rows/s"), "progress drawn into a pipe: {err}");

    // On a terminal: rows against the Parquet footers' count, bytes, rate.
    let command = format!(
        "{} sql --data-dir {} \"CREATE OR REPLACE {}\"",
        env!("CARGO_BIN_EXE_basin"),
        data.display(),
        job.trim_start_matches("CREATE ")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("BASIN_PROGRESS_DELAY_MS", "0")
        .env_remove("CI")
        .output()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("/200,000 rows"), "{screen}");
    assert!(
        screen.contains(" read, ") && screen.contains("rows/s"),
        "{screen}"
    );
    assert!(
        screen.contains("created lake.sorted with 200000 rows"),
        "{screen}"
    );
}
