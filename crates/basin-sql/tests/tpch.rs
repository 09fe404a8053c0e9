//! TPC-H correctness against DuckDB: the 22 queries of `tests/tpch/` run
//! through `Engine` over the TPC-H tables at scale factor 0.1 (registered as
//! external Parquet tables), and every answer must equal DuckDB's.
//!
//! `scripts/tpch_reference.py` makes the reference with DuckDB's tpch
//! extension: the tables as Parquet files and DuckDB's answer to the very
//! same query texts, as CSV. It lives in `$BASIN_TPCH_DIR` (default
//! `~/.cache/basin-tpch/sf0.1`) and is generated here when incomplete.
//!
//! Answers match when they have the same rows (in the same order when the
//! query has ORDER BY, else compared sorted); numbers are equal within a
//! relative 1e-9 or an absolute 1e-6 (DuckDB answers some decimal
//! aggregates as doubles), dates and strings exactly.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use basin_sql::{Engine, Output};
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

const SCALE_FACTOR: &str = "0.1";
const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];
const QUERIES: usize = 22;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BASIN_TPCH_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/basin-tpch/sf0.1")
}

fn query_name(n: usize) -> String {
    format!("q{n:02}")
}

fn query_text(n: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tpch")
        .join(format!("{}.sql", query_name(n)));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same rule as the script's: data of this scale factor, and an answer
/// to the current text of every query.
fn reference_complete(dir: &Path) -> bool {
    let data = dir.join("data");
    let sf = std::fs::read_to_string(data.join("SF")).unwrap_or_default();
    if sf.trim().parse::<f64>().ok() != SCALE_FACTOR.parse::<f64>().ok() {
        return false;
    }
    TABLES
        .iter()
        .all(|t| data.join(format!("{t}.parquet")).is_file())
        && (1..=QUERIES).all(|n| {
            let answers = dir.join("answers");
            answers.join(format!("{}.csv", query_name(n))).is_file()
                && std::fs::read_to_string(answers.join(format!("{}.sql", query_name(n))))
                    .is_ok_and(|stored| stored == query_text(n))
        })
}

/// Run `scripts/tpch_reference.py` unless its output is already complete.
fn ensure_reference(dir: &Path) {
    if reference_complete(dir) {
        return;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import duckdb, duckdb_extension_tpch"])
        .output();
    let usable = matches!(&probe, Ok(out) if out.status.success());
    assert!(
        usable,
        "the TPC-H reference in {} is incomplete and cannot be generated: {python} with the \
         duckdb and duckdb-extension-tpch packages is needed ({}). Run `bash scripts/test.sh`, \
         which installs them and generates the reference.",
        dir.display(),
        match &probe {
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => format!("{python}: {e}"),
        }
    );
    let script = repo_root().join("scripts/tpch_reference.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .args(["--sf", SCALE_FACTOR])
        .status()
        .unwrap_or_else(|e| panic!("{python} {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    assert!(
        reference_complete(dir),
        "{} ran but {} is still incomplete",
        script.display(),
        dir.display()
    );
}

/// One value of an answer.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    fn matches(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Num(a), Cell::Num(b)) => {
                let diff = (a - b).abs();
                diff <= 1e-6 || diff <= 1e-9 * a.abs().max(b.abs())
            }
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Num(_) => 1,
            Cell::Text(_) => 2,
        }
    }

    fn order(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Num(a), Cell::Num(b)) => a.total_cmp(b),
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Cell::Null => write!(f, "NULL"),
            Cell::Num(n) => write!(f, "{n}"),
            Cell::Text(s) => write!(f, "{s:?}"),
        }
    }
}

type Row = Vec<Cell>;

fn show(row: &Row) -> String {
    let cells: Vec<String> = row.iter().map(Cell::to_string).collect();
    format!("[{}]", cells.join(", "))
}

/// Basin's answer: its rows, and which columns are numbers.
fn basin_rows(batches: &[RecordBatch]) -> (Vec<Row>, Vec<bool>) {
    let options = FormatOptions::default();
    let mut numeric = Vec::new();
    let mut rows = Vec::new();
    for batch in batches {
        numeric = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().is_numeric())
            .collect();
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable"))
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .zip(&numeric)
                    .map(|((col, fmt), &num)| {
                        let s = fmt.value(i).to_string();
                        if col.is_null(i) {
                            Cell::Null
                        } else if num {
                            Cell::Num(s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}")))
                        } else {
                            Cell::Text(s)
                        }
                    })
                    .collect(),
            );
        }
    }
    (rows, numeric)
}

/// DuckDB's answer, read as text and typed like Basin's columns.
fn duckdb_rows(path: &Path, numeric: &[bool]) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (header, _) = Format::default()
        .with_header(true)
        .infer_schema(text.as_bytes(), Some(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let numeric = match numeric {
        [] => vec![false; header.fields().len()],
        n if n.len() == header.fields().len() => n.to_vec(),
        n => {
            return Err(format!(
                "{} columns, DuckDB's answer has {}",
                n.len(),
                header.fields().len()
            ))
        }
    };
    let fields: Vec<Field> = (0..numeric.len())
        .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
        .collect();
    let reader = ReaderBuilder::new(Arc::new(Schema::new(fields)))
        .with_header(true)
        .with_batch_size(8192)
        .build(std::io::Cursor::new(text))
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
        let columns: Vec<&StringArray> = batch
            .columns()
            .iter()
            .map(|c| c.as_any().downcast_ref().expect("Utf8"))
            .collect();
        for i in 0..batch.num_rows() {
            let mut row = Vec::with_capacity(columns.len());
            for (col, &num) in columns.iter().zip(&numeric) {
                // The CSV reader reads an empty field as null.
                let s = if col.is_null(i) { "" } else { col.value(i) };
                row.push(if s == "NULL" {
                    Cell::Null
                } else if num {
                    Cell::Num(
                        s.parse()
                            .map_err(|e| format!("{s:?} is not a number: {e}"))?,
                    )
                } else {
                    Cell::Text(s.to_string())
                });
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.order(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// Where Basin's answer differs from DuckDB's, if anywhere.
fn compare(sql: &str, mut ours: Vec<Row>, mut theirs: Vec<Row>) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some(format!(
            "{} rows, DuckDB has {}; first rows: ours {}, DuckDB's {}",
            ours.len(),
            theirs.len(),
            ours.first().map_or("-".into(), show),
            theirs.first().map_or("-".into(), show)
        ));
    }
    let ordered = sql.to_lowercase().contains("order by");
    if !ordered {
        sort_rows(&mut ours);
        sort_rows(&mut theirs);
    }
    let bad: Vec<String> = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .filter(|(_, (a, b))| {
            a.len() != b.len() || a.iter().zip(b.iter()).any(|(x, y)| !x.matches(y))
        })
        .map(|(i, (a, b))| format!("row {i}: ours {}, DuckDB's {}", show(a), show(b)))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let shown: Vec<&str> = bad.iter().take(3).map(String::as_str).collect();
    Some(format!(
        "{} of {} rows differ{}: {}",
        bad.len(),
        ours.len(),
        if ordered {
            " (in ORDER BY order)"
        } else {
            " (sorted)"
        },
        shown.join("; ")
    ))
}

async fn register_tables(engine: &Engine, data: &Path) {
    for table in TABLES {
        let path = data.join(format!("{table}.parquet"));
        let ddl = format!(
            "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}'",
            path.display()
        );
        engine
            .execute(&ddl)
            .await
            .unwrap_or_else(|e| panic!("{ddl}: {e}"));
    }
}

async fn run_query(engine: &Engine, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let outputs = engine.execute(sql).await.map_err(|e| e.to_string())?;
    match outputs.into_iter().last() {
        Some(Output::Rows(df)) => df.collect().await.map_err(|e| e.to_string()),
        Some(Output::Message(m)) => Err(format!("not a query: {m}")),
        None => Err("no statement".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_answers_match_duckdb() {
    let reference = reference_dir();
    ensure_reference(&reference);
    let data_dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(data_dir.path()).await.unwrap();
    register_tables(&engine, &reference.join("data")).await;

    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for n in 1..=QUERIES {
        let name = query_name(n);
        let sql = query_text(n);
        let started = Instant::now();
        let result = run_query(&engine, &sql).await;
        timings.push(format!("{name} {:.2}s", started.elapsed().as_secs_f64()));
        let batches = match result {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: failed: {e}"));
                continue;
            }
        };
        let (ours, numeric) = basin_rows(&batches);
        let answer = reference.join("answers").join(format!("{name}.csv"));
        let theirs = duckdb_rows(&answer, &numeric);
        match theirs {
            Err(e) => failures.push(format!("{name}: reading DuckDB's answer: {e}")),
            Ok(theirs) => {
                if let Some(diff) = compare(&sql, ours, theirs) {
                    failures.push(format!("{name}: {diff}"));
                }
            }
        }
    }
    eprintln!("TPC-H sf{SCALE_FACTOR} timings: {}", timings.join(", "));
    assert!(
        failures.is_empty(),
        "{} of {QUERIES} TPC-H queries differ from DuckDB's answers ({}):\n{}",
        failures.len(),
        reference.display(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_catches_differences() {
    let row = |n: f64, s: &str| vec![Cell::Num(n), Cell::Text(s.into())];
    let ordered = "select a, b from t order by a";
    assert!(compare(ordered, vec![row(1.0, "x")], vec![row(1.0 + 1e-12, "x")]).is_none());
    assert!(compare(ordered, vec![row(1e6, "x")], vec![row(1e6 + 0.01, "x")]).is_some());
    assert!(compare(ordered, vec![row(1.0, "x")], vec![row(1.0, "y")]).is_some());
    assert!(compare(ordered, vec![row(1.0, "x")], vec![]).is_some());
    let swapped = (
        vec![row(1.0, "a"), row(2.0, "b")],
        vec![row(2.0, "b"), row(1.0, "a")],
    );
    assert!(compare(ordered, swapped.0.clone(), swapped.1.clone()).is_some());
    assert!(compare("select a, b from t", swapped.0, swapped.1).is_none());
    assert!(!Cell::Null.matches(&Cell::Num(0.0)));
}
