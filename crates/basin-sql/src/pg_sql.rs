//! The SQL text Basin sends to PostgreSQL: quoted names, the mapping between
//! PostgreSQL column types and Arrow types, the select list that renders each
//! column as CSV Arrow can parse, and filters translated for pushdown.
//!
//! A filter is translated only when its meaning is the same on both sides
//! (comparisons, AND/OR/NOT, IS [NOT] NULL, IN lists, BETWEEN, LIKE over
//! columns and plain literals); anything else stays with DataFusion.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};

/// `name` as a PostgreSQL identifier, always quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `schema.table` or `table` name as quoted PostgreSQL identifiers.
pub fn table_ident(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The Arrow type a PostgreSQL column reads as, from `pg_type.typname` and
/// `pg_attribute.atttypmod`.
pub fn arrow_type(typname: &str, typmod: i32) -> DataType {
    match typname {
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        "float4" => DataType::Float32,
        "float8" => DataType::Float64,
        "numeric" => numeric_type(typmod),
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => DataType::Utf8,
    }
}

/// `numeric(p, s)` as Decimal128 when it fits; unconstrained numeric as Float64.
fn numeric_type(typmod: i32) -> DataType {
    if typmod < 4 {
        return DataType::Float64;
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0xffff;
    if (1..=38).contains(&precision) {
        DataType::Decimal128(precision as u8, scale as i8)
    } else {
        DataType::Float64
    }
}

/// The select-list item that renders column `name` as text Arrow's CSV
/// reader parses into `data_type`; `None` when the type is not supported.
pub fn select_item(name: &str, data_type: &DataType) -> Option<String> {
    let col = ident(name);
    let cast = match data_type {
        DataType::Boolean => "text",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "int2",
        DataType::Int32 | DataType::UInt16 => "int4",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int8",
        DataType::Float16 | DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        DataType::Decimal128(p, s) => return Some(format!("{col}::numeric({p},{s})")),
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Timestamp(_, Some(_)) => {
            return Some(format!("({col}::timestamptz AT TIME ZONE 'UTC')"))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        _ => return None,
    };
    Some(format!("{col}::{cast}"))
}

/// `filter` as a PostgreSQL boolean expression, when it means the same there.
pub fn filter_sql(filter: &Expr) -> Option<String> {
    match filter {
        Expr::Column(c) => Some(ident(&c.name)),
        Expr::Literal(value, _) => literal(value),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let op = operator(op)?;
            Some(format!(
                "({} {op} {})",
                filter_sql(left)?,
                filter_sql(right)?
            ))
        }
        Expr::Not(inner) => Some(format!("(NOT {})", filter_sql(inner)?)),
        Expr::IsNull(inner) => Some(format!("({} IS NULL)", filter_sql(inner)?)),
        Expr::IsNotNull(inner) => Some(format!("({} IS NOT NULL)", filter_sql(inner)?)),
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => Some(format!(
            "({} {}BETWEEN {} AND {})",
            filter_sql(expr)?,
            if *negated { "NOT " } else { "" },
            filter_sql(low)?,
            filter_sql(high)?
        )),
        Expr::InList(list) => {
            let items = list
                .list
                .iter()
                .map(filter_sql)
                .collect::<Option<Vec<_>>>()?;
            Some(format!(
                "({} {}IN ({}))",
                filter_sql(&list.expr)?,
                if list.negated { "NOT " } else { "" },
                items.join(", ")
            ))
        }
        Expr::Like(like) => like_sql(like),
        _ => None,
    }
}

fn like_sql(like: &Like) -> Option<String> {
    if like.escape_char.is_some() {
        return None;
    }
    let op = match (like.negated, like.case_insensitive) {
        (false, false) => "LIKE",
        (true, false) => "NOT LIKE",
        (false, true) => "ILIKE",
        (true, true) => "NOT ILIKE",
    };
    Some(format!(
        "({} {op} {})",
        filter_sql(&like.expr)?,
        filter_sql(&like.pattern)?
    ))
}

fn operator(op: &Operator) -> Option<&'static str> {
    Some(match op {
        Operator::Eq => "=",
        Operator::NotEq => "<>",
        Operator::Lt => "<",
        Operator::LtEq => "<=",
        Operator::Gt => ">",
        Operator::GtEq => ">=",
        Operator::And => "AND",
        Operator::Or => "OR",
        Operator::IsDistinctFrom => "IS DISTINCT FROM",
        Operator::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
        _ => return None,
    })
}

fn literal(value: &ScalarValue) -> Option<String> {
    if value.is_null() {
        return None;
    }
    Some(match value {
        ScalarValue::Boolean(Some(b)) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..) => value.to_string(),
        ScalarValue::Float32(Some(f)) if f.is_finite() => format!("{f:?}::float4"),
        ScalarValue::Float64(Some(f)) if f.is_finite() => format!("{f:?}::float8"),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => string_literal(s),
        ScalarValue::Date32(_) => format!("DATE {}", string_literal(&value.to_string())),
        ScalarValue::TimestampSecond(_, None)
        | ScalarValue::TimestampMillisecond(_, None)
        | ScalarValue::TimestampMicrosecond(_, None)
        | ScalarValue::TimestampNanosecond(_, None) => {
            format!("TIMESTAMP {}", string_literal(&value.to_string()))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn translates_comparisons_and_logic() {
        let f = col("fare").gt(lit(10.5)).and(col("zone").eq(lit("JFK")));
        assert_eq!(
            filter_sql(&f).unwrap(),
            "((\"fare\" > 10.5::float8) AND (\"zone\" = 'JFK'))"
        );
        let f = col("id").in_list(vec![lit(1i64), lit(2i64)], true);
        assert_eq!(filter_sql(&f).unwrap(), "(\"id\" NOT IN (1, 2))");
        assert_eq!(
            filter_sql(&col("n").is_null().or(col("s").like(lit("a%")))).unwrap(),
            "((\"n\" IS NULL) OR (\"s\" LIKE 'a%'))"
        );
    }

    #[test]
    fn quotes_and_refuses_what_differs() {
        assert_eq!(
            filter_sql(&col("name").eq(lit("O'Hare"))).unwrap(),
            "(\"name\" = 'O''Hare')"
        );
        assert_eq!(table_ident("public.Trips"), "\"public\".\"Trips\"");
        // Arithmetic and functions may differ between engines: not pushed.
        assert!(filter_sql(&(col("a") + lit(1)).gt(lit(2))).is_none());
        assert!(filter_sql(&col("a").eq(lit(ScalarValue::Int64(None)))).is_none());
    }

    #[test]
    fn maps_postgres_types() {
        assert_eq!(arrow_type("int8", -1), DataType::Int64);
        // numeric(10,2): typmod = (10 << 16 | 2) + 4
        assert_eq!(
            arrow_type("numeric", (10 << 16 | 2) + 4),
            DataType::Decimal128(10, 2)
        );
        assert_eq!(arrow_type("numeric", -1), DataType::Float64);
        assert_eq!(arrow_type("varchar", 36), DataType::Utf8);
        assert_eq!(
            select_item("t", &arrow_type("timestamptz", -1)).unwrap(),
            "(\"t\"::timestamptz AT TIME ZONE 'UTC')"
        );
    }
}
