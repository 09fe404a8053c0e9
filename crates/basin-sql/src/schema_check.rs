//! Schema mismatches caught before any data moves, each naming the column:
//!
//! - an `INSERT` whose query gives another number of columns than the
//!   target takes, or a text column where the target holds numbers or
//!   booleans (which would otherwise fail mid-job on the first bad value,
//!   without saying which column);
//! - a Parquet external table whose declared columns are missing from the
//!   files, or declared with a type the files' values do not fit (which
//!   would otherwise read as NULLs or truncated numbers).

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Result, SqlError};

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number_or_bool(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// Whether a query column of type `from` may be inserted into `to`.
fn insertable(from: &DataType, to: &DataType) -> bool {
    if from == to || matches!(from, DataType::Null) {
        return true;
    }
    if is_text(from) && is_number_or_bool(to) {
        return false;
    }
    can_cast_types(from, to)
}

fn names(fields: &[&Field]) -> String {
    fields
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check an INSERT's query columns against the target's, by position.
/// `columns` are the target columns named in the statement (all when empty).
pub fn check_insert(
    target: &str,
    table: &Schema,
    columns: &[String],
    query: &Schema,
) -> Result<()> {
    let targets: Vec<&Field> = if columns.is_empty() {
        table.fields().iter().map(|f| f.as_ref()).collect()
    } else {
        let mut fields = Vec::with_capacity(columns.len());
        for name in columns {
            let field = table.field_with_name(name).map_err(|_| {
                let all: Vec<&Field> = table.fields().iter().map(|f| f.as_ref()).collect();
                SqlError::Invalid(format!(
                    "column '{name}' is not in {target} (its columns: {})",
                    names(&all)
                ))
            })?;
            fields.push(field);
        }
        fields
    };
    let given: Vec<&Field> = query.fields().iter().map(|f| f.as_ref()).collect();
    if given.len() != targets.len() {
        return Err(SqlError::Invalid(format!(
            "INSERT INTO {target}: the query gives {} columns ({}) but {} are expected ({})",
            given.len(),
            names(&given),
            targets.len(),
            names(&targets)
        )));
    }
    for (i, (to, from)) in targets.iter().zip(&given).enumerate() {
        if !insertable(from.data_type(), to.data_type()) {
            return Err(SqlError::Invalid(format!(
                "schema mismatch: column '{}' of {target} is {} but the query's column {} ({}) is {}; \
                 cast it explicitly",
                to.name(),
                to.data_type(),
                i + 1,
                from.name(),
                from.data_type()
            )));
        }
    }
    Ok(())
}

/// Whether values stored as `file` read as `declared` without loss.
fn reads_as(file: &DataType, declared: &DataType) -> bool {
    use DataType::*;
    if file == declared || (is_text(file) && is_text(declared)) {
        return true;
    }
    let rank = |t: &DataType| match t {
        Int8 => Some((0, 1)),
        Int16 => Some((0, 2)),
        Int32 => Some((0, 4)),
        Int64 => Some((0, 8)),
        UInt8 => Some((1, 1)),
        UInt16 => Some((1, 2)),
        UInt32 => Some((1, 4)),
        UInt64 => Some((1, 8)),
        Float16 => Some((2, 2)),
        Float32 => Some((2, 4)),
        Float64 => Some((2, 8)),
        _ => None,
    };
    match (rank(file), rank(declared)) {
        (Some((a, x)), Some((b, y))) if a == b => x <= y,
        (Some((1, x)), Some((0, y))) => x < y,
        (Some((0 | 1, x)), Some((2, y))) => x < y,
        _ => {
            matches!(
                (file, declared),
                (Timestamp(_, a), Timestamp(_, b)) if a == b
            ) || matches!(
                (file, declared),
                (Date32, Date64)
                    | (
                        Binary | LargeBinary | BinaryView,
                        Binary | LargeBinary | BinaryView
                    )
            )
        }
    }
}

/// Check declared columns of a file table against what its files hold.
pub fn check_declared(
    table: &str,
    location: &str,
    declared: &Schema,
    files: &Schema,
) -> Result<()> {
    for field in declared.fields() {
        let Ok(found) = files.field_with_name(field.name()) else {
            let all: Vec<&Field> = files.fields().iter().map(|f| f.as_ref()).collect();
            return Err(SqlError::Invalid(format!(
                "schema mismatch: column '{}' of {table} is not in the files at {location} (they have: {})",
                field.name(),
                names(&all)
            )));
        };
        if !reads_as(found.data_type(), field.data_type()) {
            return Err(SqlError::Invalid(format!(
                "schema mismatch: column '{}' of {table} is declared {} but the files at {location} hold {}",
                field.name(),
                field.data_type(),
                found.data_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn inserts_name_the_mismatched_column() {
        let table = schema(&[("id", DataType::Int64), ("day", DataType::Date32)]);
        let ok = schema(&[("a", DataType::Int32), ("b", DataType::Utf8)]);
        check_insert("lake.t", &table, &[], &ok).unwrap();
        let bad = schema(&[("a", DataType::Utf8), ("b", DataType::Date32)]);
        let err = check_insert("lake.t", &table, &[], &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 'id' of lake.t is Int64") && err.contains("(a) is Utf8"),
            "{err}"
        );
        let err = check_insert("lake.t", &table, &[], &schema(&[("a", DataType::Int64)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gives 1 columns (a) but 2 are expected (id, day)"),
            "{err}"
        );
        let err = check_insert("lake.t", &table, &["nope".into()], &ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column 'nope' is not in lake.t"), "{err}");
    }

    #[test]
    fn declared_types_must_hold_the_files_values() {
        let files = schema(&[
            ("id", DataType::Int32),
            ("fare", DataType::Float64),
            ("name", DataType::Utf8View),
        ]);
        let fine = schema(&[
            ("id", DataType::Int64),
            ("fare", DataType::Float64),
            ("name", DataType::Utf8),
        ]);
        check_declared("t", "/x", &fine, &files).unwrap();
        let narrowed = schema(&[("fare", DataType::Int32)]);
        let err = check_declared("t", "/x", &narrowed, &files)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 'fare' of t is declared Int32 but the files at /x hold Float64"),
            "{err}"
        );
        let missing = schema(&[("nope", DataType::Int32)]);
        let err = check_declared("t", "/x", &missing, &files)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "column 'nope' of t is not in the files at /x (they have: id, fare, name)"
            ),
            "{err}"
        );
    }
}
