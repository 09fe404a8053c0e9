//! Scalar functions pipelines get beyond DataFusion's own:
//! `count_char(text, c)` counts the occurrences of one character (Nexmark
//! q14's UDF).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

/// Register Basin's pipeline functions.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(count_char());
}

fn count_char() -> ScalarUDF {
    create_udf(
        "count_char",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(count_char_impl),
    )
}

fn count_char_impl(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let needle = match &args[1] {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) if s.chars().count() == 1 => {
            s.chars().next().expect("one char")
        }
        _ => return exec_err!("count_char(text, c): c must be a one-character string literal"),
    };
    let count = |s: &str| s.chars().filter(|c| *c == needle).count() as i64;
    match &args[0] {
        ColumnarValue::Scalar(s) => {
            let text = s.cast_to(&DataType::Utf8)?;
            let n = match text {
                ScalarValue::Utf8(Some(t)) => Some(count(&t)),
                _ => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(n)))
        }
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Utf8)?;
            let strings = a.as_any().downcast_ref::<StringArray>().expect("utf8");
            let out: Int64Array = strings.iter().map(|s| s.map(count)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn count_char_counts_one_character() {
        let ctx = SessionContext::new();
        register(&ctx);
        let df = ctx
            .sql("SELECT count_char('accept', 'c') AS n, count_char(NULL, 'c') AS z")
            .await
            .unwrap();
        let batches = df.collect().await.unwrap();
        let n = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(n.value(0), 2);
        assert!(batches[0].column(1).is_null(0));
        let err = ctx
            .sql("SELECT count_char('abc', 'bc')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("one-character"), "{err}");
    }
}
