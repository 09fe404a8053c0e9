//! `basin model`: train a model from a query (the same as SQL's `CREATE
//! MODEL`), and list, show, promote and roll back the versions in the data
//! dir's registry.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use basin_ml::{Entry, ModelRef, Registry, Version};
use basin_sql::{Engine, Output};
use clap::{Args, Subcommand};

/// `basin model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Train a new version of a model from a query (a candidate unless --stage production).
    Train(Box<TrainArgs>),
    /// Every model: versions, the production one and its validation metrics.
    List(RegistryArgs),
    /// One model: every version, and the chosen one's features, parameters,
    /// metrics, importance and the query and data it was trained on.
    Show(ShowArgs),
    /// Make a version production (the one before it is archived).
    Promote(PromoteArgs),
    /// Put back the version that was production before the current one.
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Folder holding the lake and the model registry.
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model's name.
    pub name: String,
    /// The training query: features, the label and (for the split) a time column.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub query: Option<String>,
    /// Read the training query from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The column to predict.
    #[arg(long)]
    pub label: String,
    /// gbt_regressor, gbt_classifier, linear_regression or logistic_regression.
    #[arg(long, default_value = "gbt_regressor")]
    pub algorithm: String,
    /// Feature columns, in order [default: every column but the label and time column].
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Columns of the query that are not features.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Column ordering rows in time; the newest rows are held out.
    #[arg(long)]
    pub time_column: Option<String>,
    /// Rows held out: a fraction (0.2), a span of the newest time (2 days) or none.
    #[arg(long, default_value = "0.2")]
    pub validation: String,
    /// A learner parameter, KEY=VALUE (iterations, learning_rate, max_depth, ...); repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Stage of the new version: candidate or production.
    #[arg(long, default_value = "candidate")]
    pub stage: String,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model, or one version of it as NAME@VERSION [default version:
    /// production, else the newest].
    pub name: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub name: String,
    /// The version to put in production.
    #[arg(value_name = "VERSION")]
    pub number: u32,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub name: String,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

pub async fn run(command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Train(args) => train(*args).await,
        ModelCommand::List(args) => list(&args),
        ModelCommand::Show(args) => show(&args),
        ModelCommand::Promote(args) => {
            Registry::open(&args.data_dir).promote(&args.name, args.number)?;
            println!(
                "model {} version {} is in production",
                args.name, args.number
            );
            Ok(())
        }
        ModelCommand::Rollback(args) => {
            let back = Registry::open(&args.data_dir).rollback(&args.name)?;
            println!("model {}: version {back} is back in production", args.name);
            Ok(())
        }
    }
}

async fn train(args: TrainArgs) -> Result<()> {
    let query = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => bail!("give the training query with --query or --file"),
    };
    let sql = create_model_sql(&args, query.trim().trim_end_matches(';'))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let engine = Engine::open(&args.data_dir).await?;
    for output in engine.execute(&sql).await? {
        if let Output::Message(m) = output {
            println!("{m}");
        }
    }
    Ok(())
}

/// The `CREATE MODEL` statement the flags describe.
fn create_model_sql(args: &TrainArgs, query: &str) -> Result<String> {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let mut options = vec![
        ("label".to_string(), quote(&args.label)),
        ("algorithm".to_string(), quote(&args.algorithm)),
        ("validation".to_string(), quote(&args.validation)),
        ("stage".to_string(), quote(&args.stage)),
    ];
    if !args.features.is_empty() {
        options.push(("features".into(), quote(&args.features.join(","))));
    }
    if !args.exclude.is_empty() {
        options.push(("exclude".into(), quote(&args.exclude.join(","))));
    }
    if let Some(t) = &args.time_column {
        options.push(("time_column".into(), quote(t)));
    }
    for p in &args.params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p}: expected KEY=VALUE, e.g. iterations=300");
        };
        options.push((k.trim().to_string(), quote(v.trim())));
    }
    let options: Vec<String> = options.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    Ok(format!(
        "CREATE MODEL {} OPTIONS ({}) AS {query}",
        args.name,
        options.join(", ")
    ))
}

fn list(args: &RegistryArgs) -> Result<()> {
    let entries = Registry::open(&args.data_dir).list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no models in {}", args.data_dir.display());
        return Ok(());
    }
    let mut rows = vec![row(&[
        "model",
        "versions",
        "production",
        "newest",
        "algorithm",
        "validation",
    ])];
    for e in &entries {
        let newest = e.versions.last();
        let shown = e.production().or(newest);
        rows.push(vec![
            e.name.clone(),
            e.versions.len().to_string(),
            e.production()
                .map(|v| v.version.to_string())
                .unwrap_or("-".into()),
            newest.map(|v| v.version.to_string()).unwrap_or("-".into()),
            shown.map(|v| v.algorithm.clone()).unwrap_or_default(),
            shown.map(metrics_of).unwrap_or_default(),
        ]);
    }
    print_rows(&rows);
    Ok(())
}

fn show(args: &ShowArgs) -> Result<()> {
    let r = ModelRef::parse(&args.name)?;
    let entry = Registry::open(&args.registry.data_dir).entry(&r.name)?;
    let chosen = match r.version {
        Some(n) => entry.version(n)?.clone(),
        None => match entry.production().or(entry.versions.last()) {
            Some(v) => v.clone(),
            None => bail!("model {} has no versions", r.name),
        },
    };
    if args.registry.json {
        let out = serde_json::json!({ "model": entry, "version": chosen });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_versions(&entry);
    print_version(&chosen);
    Ok(())
}

fn print_versions(entry: &Entry) {
    println!("model {}", entry.name);
    let mut rows = vec![row(&[
        "version",
        "stage",
        "created",
        "algorithm",
        "rows",
        "validation",
    ])];
    for v in &entry.versions {
        rows.push(vec![
            v.version.to_string(),
            v.stage.name().to_string(),
            created(v.created_ms),
            v.algorithm.clone(),
            v.report.train.rows.to_string(),
            metrics_of(v),
        ]);
    }
    print_rows(&rows);
}

fn print_version(v: &Version) {
    println!("\nversion {} ({})", v.version, v.stage.name());
    let features: Vec<String> = v
        .features
        .iter()
        .map(|f| format!("{} {}", f.name, f.data_type))
        .collect();
    println!("  features:   {}", features.join(", "));
    println!("  label:      {}", v.lineage.label);
    let params: Vec<String> = v.params.iter().map(|(k, x)| format!("{k}={x}")).collect();
    println!("  params:     {}", params.join(" "));
    println!("  training:   {}", v.report.train.summary());
    if let Some(m) = &v.report.validation {
        println!(
            "  validation: {} (split {})",
            m.summary(),
            v.lineage.validation
        );
    }
    let imp: Vec<String> = v
        .report
        .importance
        .iter()
        .map(|(f, x)| format!("{f} {x:.3}"))
        .collect();
    println!("  importance: {}", imp.join(", "));
    println!("  trained in: {:.1} s", v.report.seconds);
    println!("  query:      {}", v.lineage.query);
    println!("  snapshot:   {}", v.lineage.snapshot);
    println!("  sha256:     {}", v.sha256);
}

fn metrics_of(v: &Version) -> String {
    v.report
        .validation
        .as_ref()
        .map(|m| m.summary())
        .unwrap_or_else(|| "-".into())
}

fn created(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn print_rows(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
