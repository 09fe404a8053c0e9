//! `basin sql`: run SQL over the data dir's catalog and lake — a statement,
//! a file of statements, or an interactive shell with history and
//! multi-line input — printing results as a table, CSV, JSON lines or Parquet.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use basin_sql::progress::ScanProgress;
use basin_sql::{write_output, Engine, Format, Output};
use clap::Args;
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Arguments of `basin sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// SQL to run (several statements separated by `;`). Without it and
    /// without --file, an interactive shell starts.
    pub sql: Option<String>,
    /// Run the statements of this file.
    #[arg(short, long, conflicts_with = "sql")]
    pub file: Option<PathBuf>,
    /// Folder holding the catalog and the lake (shared with `basin up`).
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    /// Output format of query results: table, csv, json (lines) or parquet.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Write query results to this file instead of stdout (required for parquet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bad CSV/JSON input rows a statement may skip; they are kept, with
    /// file, line and reason, in lake._rejects. One more fails the statement
    /// and nothing is written.
    #[arg(long, env = "BASIN_MAX_REJECTS", default_value_t = 0)]
    pub max_rejects: u64,
}

pub async fn run(args: SqlArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let engine = Engine::open(&args.data_dir).await?;
    engine.set_max_rejects(args.max_rejects);
    for leftover in engine.leftovers() {
        eprintln!(
            "cleaned up an unfinished write to lake.{} (removed {})",
            leftover.table,
            leftover.folder.display()
        );
    }
    match (&args.sql, &args.file) {
        (Some(sql), _) => run_batch(&engine, sql, &args).await,
        (None, Some(file)) => {
            let sql = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            run_batch(&engine, &sql, &args)
                .await
                .with_context(|| format!("in {}", file.display()))
        }
        (None, None) => shell(&engine, &args).await,
    }
}

async fn run_batch(engine: &Engine, sql: &str, args: &SqlArgs) -> Result<()> {
    for statement in engine.parse(sql)? {
        let output = with_progress(engine, engine.run_statement(statement)).await?;
        let is_query = matches!(output, Output::Rows(_));
        engine.progress().reset();
        let printed = with_progress(
            engine,
            print_output(output, args.format, args.out.as_deref()),
        );
        if let Err(e) = printed.await {
            engine.discard_rejects();
            return Err(e);
        }
        if is_query {
            if let Some(note) = engine.save_rejects().await? {
                eprintln!("{note}");
            }
        }
    }
    Ok(())
}

/// Run `work`, drawing the scans' progress (rows and bytes read, rate, ETA)
/// on stderr once it has run for a moment, when stderr is a terminal and
/// not under CI. `BASIN_PROGRESS_DELAY_MS` sets the moment (default 1000).
async fn with_progress<T>(engine: &Engine, work: impl std::future::Future<Output = T>) -> T {
    let quiet = !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some();
    if quiet {
        return work.await;
    }
    let delay = std::env::var("BASIN_PROGRESS_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bar = ProgressBar::hidden();
    let ticker = tokio::spawn(draw_progress(engine.progress(), bar.clone(), delay));
    let out = work.await;
    ticker.abort();
    bar.finish_and_clear();
    out
}

async fn draw_progress(progress: Arc<ScanProgress>, bar: ProgressBar, delay_ms: u64) {
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut drawing = false;
    let mut styled_for: Option<bool> = None;
    loop {
        let now = progress.snapshot();
        let known = now.expected_rows.is_some();
        if styled_for != Some(known) {
            let template = if known {
                "{spinner} [{bar:30}] {human_pos}/{human_len} rows, {msg}, ETA {eta}"
            } else {
                "{spinner} {human_pos} rows, {msg}"
            };
            let style = ProgressStyle::with_template(template).expect("valid template");
            bar.set_style(style.progress_chars("=> "));
            styled_for = Some(known);
        }
        if let Some(total) = now.expected_rows {
            bar.set_length(total.max(now.rows));
        }
        bar.set_position(now.rows);
        let rate = now.rows as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{} read, {} rows/s",
            HumanBytes(now.bytes),
            HumanCount(rate as u64)
        ));
        if !std::mem::replace(&mut drawing, true) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn print_output(output: Output, format: Format, out: Option<&Path>) -> Result<()> {
    match output {
        Output::Message(message) => eprintln!("{message}"),
        Output::Rows(df) => {
            let rows = match (format, out) {
                (Format::Parquet, Some(path)) => {
                    write_output(df, format, Some(path), &mut std::io::sink()).await?
                }
                (Format::Parquet, None) => bail!("--format parquet needs --out FILE"),
                (_, Some(path)) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut file = std::io::BufWriter::new(file);
                    let rows = write_output(df, format, None, &mut file).await?;
                    file.flush()?;
                    rows
                }
                (_, None) => {
                    let mut stdout = std::io::stdout().lock();
                    let rows = write_output(df, format, None, &mut stdout).await?;
                    stdout.flush()?;
                    rows
                }
            };
            if format == Format::Table || out.is_some() {
                eprintln!("{rows} row{}", if rows == 1 { "" } else { "s" });
            }
        }
    }
    Ok(())
}

/// The interactive shell: statements end with `;`, history is kept in
/// `~/.basin_history`, `\q` or Ctrl-D quits.
async fn shell(engine: &Engine, args: &SqlArgs) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".basin_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!(
        "basin sql — statements end with ';', \\q quits. Data dir: {}",
        args.data_dir.display()
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "basin> "
        } else {
            "   ..> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(buffer.trim_end());
        if let Err(e) = run_batch(engine, &buffer, args).await {
            eprintln!("error: {}", crate::error_report(&e));
        }
        buffer.clear();
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
