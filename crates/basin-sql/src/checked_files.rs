//! CSV and JSON-lines external tables read row by row, so that one bad row
//! is a reject (file, line, reason) instead of a failed job.
//!
//! Each file is split into records (the `csv` crate, or one JSON object per
//! line), fields are gathered as text per column, and each batch is cast to
//! the table's types at once. A value that does not cast, a missing NOT NULL
//! value, a wrong field count or a line that is not a JSON object rejects
//! its row to the statement's `RejectLog`, which fails the statement past
//! `--max-rejects`. A CSV header whose column count differs from the table's
//! is a schema mismatch and names the columns.
//!
//! Tables with options this reader does not implement (compression, hive
//! partitions, other CSV dialect settings) go to DataFusion's own reader.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringBuilder};
use datafusion::arrow::compute::{cast_with_options, filter, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{exec_err, plan_err, DataFusionError};
use datafusion::datasource::provider::DefaultTableFactory;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::channel_exec::{BatchSender, ChannelExec, Producer};
use crate::rejects::{Reject, RejectLog};

type DfResult<T> = datafusion::error::Result<T>;

const ROWS_PER_BATCH: usize = 8192;

/// The text formats read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    Csv {
        has_header: bool,
        delimiter: u8,
        quote: u8,
    },
    Json,
}

impl TextFormat {
    fn extensions(&self) -> &'static [&'static str] {
        match self {
            TextFormat::Csv { .. } => &["csv"],
            TextFormat::Json => &["json", "jsonl", "ndjson"],
        }
    }
}

/// Makes checked tables for `STORED AS CSV` / `STORED AS JSON`.
#[derive(Debug)]
pub struct CheckedFileFactory {
    rejects: Arc<RejectLog>,
    json: bool,
}

impl CheckedFileFactory {
    pub fn csv(rejects: Arc<RejectLog>) -> CheckedFileFactory {
        CheckedFileFactory {
            rejects,
            json: false,
        }
    }

    pub fn json(rejects: Arc<RejectLog>) -> CheckedFileFactory {
        CheckedFileFactory {
            rejects,
            json: true,
        }
    }

    /// The format, or `None` when an option asks for what only DataFusion's
    /// reader does.
    fn format(&self, cmd: &CreateExternalTable) -> DfResult<Option<TextFormat>> {
        if !cmd.table_partition_cols.is_empty() || cmd.unbounded {
            return Ok(None);
        }
        let mut format = if self.json {
            TextFormat::Json
        } else {
            TextFormat::Csv {
                has_header: true,
                delimiter: b',',
                quote: b'"',
            }
        };
        for (key, value) in &cmd.options {
            let key = key.strip_prefix("format.").unwrap_or(key);
            let supported = apply_option(&mut format, key, value)?;
            if !supported {
                return Ok(None);
            }
        }
        Ok(Some(format))
    }
}

/// Apply one table option; `false` when this reader does not implement it.
fn apply_option(format: &mut TextFormat, key: &str, value: &str) -> DfResult<bool> {
    let byte = |v: &str| match v.as_bytes() {
        [b] => Ok(*b),
        _ => plan_err!("option '{key}' must be one character, got '{v}'"),
    };
    match (format, key) {
        (_, "compression") => Ok(value.eq_ignore_ascii_case("uncompressed")),
        (TextFormat::Csv { has_header, .. }, "has_header") => {
            *has_header = value.eq_ignore_ascii_case("true");
            Ok(true)
        }
        (TextFormat::Csv { delimiter, .. }, "delimiter") => {
            *delimiter = byte(value)?;
            Ok(true)
        }
        (TextFormat::Csv { quote, .. }, "quote") => {
            *quote = byte(value)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[async_trait]
impl TableProviderFactory for CheckedFileFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let fallback = DefaultTableFactory::new();
        let Some(format) = self.format(cmd)? else {
            return fallback.create(state, cmd).await;
        };
        let schema = if cmd.schema.fields().is_empty() {
            // DataFusion infers the schema; this reader checks the rows.
            fallback.create(state, cmd).await?.schema()
        } else {
            Arc::new(cmd.schema.as_arrow().clone())
        };
        let locations: Vec<PathBuf> = cmd.locations.iter().map(PathBuf::from).collect();
        for location in &locations {
            if !location.exists() {
                return plan_err!("{}: no such file or folder", location.display());
            }
        }
        Ok(Arc::new(CheckedFileTable {
            table: cmd.name.table().to_string(),
            locations,
            format,
            schema,
            rejects: self.rejects.clone(),
        }))
    }
}

/// A CSV or JSON-lines table whose bad rows are rejected one by one.
#[derive(Debug)]
pub struct CheckedFileTable {
    table: String,
    locations: Vec<PathBuf>,
    format: TextFormat,
    schema: SchemaRef,
    rejects: Arc<RejectLog>,
}

impl CheckedFileTable {
    /// The files behind the table now: files as given, folders' files with
    /// the format's extension (hidden and `_` files left out), sorted.
    fn files(&self) -> DfResult<Vec<PathBuf>> {
        let mut files = Vec::new();
        for location in &self.locations {
            if location.is_file() {
                files.push(location.clone());
                continue;
            }
            collect_files(location, self.format.extensions(), &mut files)?;
        }
        files.sort();
        Ok(files)
    }
}

fn collect_files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> DfResult<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DataFusionError::Execution(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, extensions, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[async_trait]
impl TableProvider for CheckedFileTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = self.files()?;
        let groups = state.config().target_partitions().min(files.len()).max(1);
        let mut grouped: Vec<Vec<PathBuf>> = vec![Vec::new(); groups];
        for (i, file) in files.iter().enumerate() {
            grouped[i % groups].push(file.clone());
        }
        let out_schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let reader = Arc::new(Reader {
            table: self.table.clone(),
            format: self.format,
            schema: self.schema.clone(),
            projection: projection.cloned(),
            rejects: self.rejects.clone(),
        });
        let grouped = Arc::new(grouped);
        let produce: Producer = Arc::new(move |n, tx: BatchSender| {
            let (reader, files) = (reader.clone(), grouped[n].clone());
            tokio::task::spawn_blocking(move || {
                for file in files {
                    if let Err(e) = reader.read_file(&file, &tx) {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            });
        });
        let detail = format!(
            "{} file(s) of {}, bad rows rejected",
            files.len(),
            self.table
        );
        Ok(Arc::new(ChannelExec::new(
            "CheckedFileScan",
            detail,
            out_schema,
            groups,
            produce,
        )))
    }
}

/// Reads files of one table into checked batches.
struct Reader {
    table: String,
    format: TextFormat,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    rejects: Arc<RejectLog>,
}

/// Rows gathered as text, per column, before the cast to the table's types.
struct TextBatch {
    columns: Vec<StringBuilder>,
    lines: Vec<u64>,
    raws: Vec<Option<String>>,
    /// Rows already known bad (line, reason, raw): rejected with the
    /// batch, so that rejects are reported in line order.
    bad: Vec<(u64, String, String)>,
}

impl TextBatch {
    fn new(width: usize) -> TextBatch {
        TextBatch {
            columns: (0..width).map(|_| StringBuilder::new()).collect(),
            lines: Vec::new(),
            raws: Vec::new(),
            bad: Vec::new(),
        }
    }

    fn push(&mut self, line: u64, values: &[Option<&str>], raw: Option<String>) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            builder.append_option(*value);
        }
        self.lines.push(line);
        self.raws.push(raw);
    }
}

impl Reader {
    fn read_file(&self, path: &Path, tx: &BatchSender) -> DfResult<()> {
        let file = File::open(path)
            .map_err(|e| DataFusionError::Execution(format!("{}: {e}", path.display())))?;
        match self.format {
            TextFormat::Csv {
                has_header,
                delimiter,
                quote,
            } => {
                let reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .delimiter(delimiter)
                    .quote(quote)
                    .from_reader(BufReader::with_capacity(1 << 20, file));
                self.read_csv(path, reader, has_header, delimiter, tx)
            }
            TextFormat::Json => self.read_json(path, BufReader::with_capacity(1 << 20, file), tx),
        }
    }

    fn read_csv(
        &self,
        path: &Path,
        mut reader: csv::Reader<BufReader<File>>,
        has_header: bool,
        delimiter: u8,
        tx: &BatchSender,
    ) -> DfResult<()> {
        let width = self.schema.fields().len();
        let mut record = csv::ByteRecord::new();
        let mut batch = TextBatch::new(width);
        let mut first = true;
        loop {
            let more = reader
                .read_byte_record(&mut record)
                .map_err(|e| DataFusionError::Execution(format!("{}: {e}", path.display())))?;
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| p.line());
            if std::mem::take(&mut first) && has_header {
                self.check_header(path, &record)?;
                continue;
            }
            let mut values: Vec<Option<&str>> = Vec::with_capacity(width);
            match self.csv_values(&record, &mut values) {
                Ok(()) => batch.push(line, &values, None),
                Err(reason) => batch
                    .bad
                    .push((line, reason, join_fields(&record, delimiter))),
            }
            if batch.lines.len() + batch.bad.len() >= ROWS_PER_BATCH {
                let full = std::mem::replace(&mut batch, TextBatch::new(width));
                if !self.send(path, full, delimiter, tx)? {
                    return Ok(());
                }
            }
        }
        self.send(path, batch, delimiter, tx)?;
        Ok(())
    }

    /// A header with another column count than the table's is a mismatch.
    fn check_header(&self, path: &Path, header: &csv::ByteRecord) -> DfResult<()> {
        let names: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect();
        let fields = self.schema.fields();
        if names.len() == fields.len() {
            return Ok(());
        }
        let declared: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        let odd = if names.len() > declared.len() {
            format!("extra column '{}'", names[declared.len()])
        } else {
            format!("no column for '{}'", declared[names.len()])
        };
        exec_err!(
            "schema mismatch in {}: the header has {} columns ({}) but table {} has {} ({}): {odd}",
            path.display(),
            names.len(),
            names.join(", "),
            self.table,
            declared.len(),
            declared.join(", ")
        )
    }

    fn csv_values<'r>(
        &self,
        record: &'r csv::ByteRecord,
        values: &mut Vec<Option<&'r str>>,
    ) -> Result<(), String> {
        let fields = self.schema.fields();
        if record.len() != fields.len() {
            return Err(format!(
                "expected {} fields, found {}",
                fields.len(),
                record.len()
            ));
        }
        for (i, raw) in record.iter().enumerate() {
            let text = std::str::from_utf8(raw)
                .map_err(|_| format!("column '{}': invalid UTF-8", fields[i].name()))?;
            values.push((!text.is_empty()).then_some(text));
        }
        Ok(())
    }

    fn read_json(
        &self,
        path: &Path,
        mut reader: BufReader<File>,
        tx: &BatchSender,
    ) -> DfResult<()> {
        let width = self.schema.fields().len();
        let mut batch = TextBatch::new(width);
        let mut buf = Vec::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            let read = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| DataFusionError::Execution(format!("{}: {e}", path.display())))?;
            if read == 0 {
                break;
            }
            line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.json_values(&buf) {
                Ok(values) => {
                    let refs: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
                    let raw = String::from_utf8_lossy(&buf).trim_end().to_string();
                    batch.push(line, &refs, Some(raw));
                }
                Err(reason) => {
                    let raw = String::from_utf8_lossy(&buf).trim_end().to_string();
                    batch.bad.push((line, reason, raw));
                }
            }
            if batch.lines.len() + batch.bad.len() >= ROWS_PER_BATCH {
                let full = std::mem::replace(&mut batch, TextBatch::new(width));
                if !self.send(path, full, b',', tx)? {
                    return Ok(());
                }
            }
        }
        self.send(path, batch, b',', tx)?;
        Ok(())
    }

    fn json_values(&self, line: &[u8]) -> Result<Vec<Option<String>>, String> {
        let line = line.trim_ascii_end();
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
            let what = e.to_string();
            let what = what.split(" at line ").next().unwrap_or(&what).to_string();
            format!("invalid JSON at column {}: {what}", e.column())
        })?;
        let serde_json::Value::Object(object) = value else {
            return Err("expected a JSON object".to_string());
        };
        let fields = self.schema.fields();
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            let text = match object.get(field.name()) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    Some(v.to_string())
                }
                Some(v) if is_text(field.data_type()) => Some(v.to_string()),
                Some(_) => {
                    return Err(format!(
                        "column '{}': expected a {} value, found an object or array",
                        field.name(),
                        field.data_type()
                    ))
                }
            };
            values.push(text);
        }
        Ok(values)
    }

    /// Report bad rows, in line order.
    fn reject_all(&self, path: &Path, mut rows: Vec<(u64, String, String)>) -> DfResult<()> {
        rows.sort_by_key(|(line, _, _)| *line);
        for (line, reason, raw) in rows {
            self.rejects.record(Reject {
                table: self.table.clone(),
                file: path.display().to_string(),
                line,
                reason,
                raw,
            })?;
        }
        Ok(())
    }

    /// Cast a text batch to the table's types, reject the rows that do not
    /// fit, and send the rest; `false` when the reader has gone away.
    fn send(
        &self,
        path: &Path,
        mut batch: TextBatch,
        delimiter: u8,
        tx: &BatchSender,
    ) -> DfResult<bool> {
        let rows = batch.lines.len();
        if rows == 0 {
            self.reject_all(path, std::mem::take(&mut batch.bad))?;
            return Ok(true);
        }
        let text: Vec<ArrayRef> = batch
            .columns
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let (typed, bad) = self.cast_columns(&text)?;
        let mut rejected = std::mem::take(&mut batch.bad);
        for (row, reason) in &bad {
            let raw = batch.raws[*row]
                .take()
                .unwrap_or_else(|| row_text(&text, *row, delimiter));
            rejected.push((batch.lines[*row], reason.clone(), raw));
        }
        self.reject_all(path, rejected)?;
        let mut typed = typed;
        if !bad.is_empty() {
            // Filter first: the dropped rows may hold NULLs in NOT NULL columns.
            let mut keep = vec![true; rows];
            for (row, _) in &bad {
                keep[*row] = false;
            }
            let keep = BooleanArray::from(keep);
            typed = typed
                .iter()
                .map(|c| filter(c.as_ref(), &keep))
                .collect::<Result<_, _>>()?;
        }
        let mut out = RecordBatch::try_new(self.schema.clone(), typed)?;
        if let Some(p) = &self.projection {
            out = out.project(p)?;
        }
        Ok(tx.blocking_send(Ok(out)).is_ok())
    }

    /// Each column cast to its type, and the rows (with a reason) where a
    /// value did not cast or a NOT NULL column is empty.
    fn cast_columns(&self, text: &[ArrayRef]) -> DfResult<(Vec<ArrayRef>, Vec<BadRow>)> {
        let options = CastOptions {
            safe: true,
            ..Default::default()
        };
        let mut typed = Vec::with_capacity(text.len());
        let mut bad: Vec<BadRow> = Vec::new();
        let mut is_bad = vec![false; text.first().map_or(0, |c| c.len())];
        for (field, column) in self.schema.fields().iter().zip(text) {
            let cast = cast_with_options(column, field.data_type(), &options)?;
            let clean = cast.null_count() == column.null_count()
                && (field.is_nullable() || cast.null_count() == 0);
            if !clean {
                for row in (0..cast.len()).filter(|r| cast.is_null(*r)) {
                    if is_bad[row] {
                        continue;
                    }
                    let reason = if column.is_valid(row) {
                        let value = text_value(column, row);
                        format!(
                            "column '{}': cannot read '{value}' as {}",
                            field.name(),
                            field.data_type()
                        )
                    } else if !field.is_nullable() {
                        format!("column '{}' is empty but declared NOT NULL", field.name())
                    } else {
                        continue;
                    };
                    is_bad[row] = true;
                    bad.push((row, reason));
                }
            }
            typed.push(cast);
        }
        bad.sort_by_key(|(row, _)| *row);
        Ok((typed, bad))
    }
}

/// A row of a batch that did not fit, and why.
type BadRow = (usize, String);

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn text_value(column: &ArrayRef, row: usize) -> String {
    column
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .map(|a| a.value(row).to_string())
        .unwrap_or_default()
}

/// A row of a text batch as a delimited line again (for the rejects table).
fn row_text(text: &[ArrayRef], row: usize, delimiter: u8) -> String {
    let parts: Vec<String> = text.iter().map(|c| text_value(c, row)).collect();
    parts.join(&(delimiter as char).to_string())
}

fn join_fields(record: &csv::ByteRecord, delimiter: u8) -> String {
    let parts: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    parts.join(&(delimiter as char).to_string())
}
