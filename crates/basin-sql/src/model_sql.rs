//! `CREATE MODEL name [OPTIONS (key = value, ...)] AS SELECT ...` in a SQL
//! script, beside everything DataFusion's parser takes. Each run adds a
//! version of the model to the registry; the options say what to learn
//! (`label`, `algorithm`, `features`, `exclude`, `time_column`,
//! `validation`, `stage`) and how (the learner's parameters).

use std::collections::VecDeque;

use datafusion::arrow::temporal_conversions::timestamp_us_to_datetime;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Statement as SqlStatement, Value};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum Stmt {
    Sql(Statement),
    CreateModel(CreateModel),
}

/// A parsed `CREATE MODEL`.
#[derive(Debug, Clone)]
pub struct CreateModel {
    pub name: String,
    /// Options in the order written, keys lower-cased, values as text.
    pub options: Vec<(String, String)>,
    pub query: Box<Query>,
}

/// The statements of `sql`, in order.
pub fn parse_script(sql: &str) -> Result<VecDeque<Stmt>, DataFusionError> {
    let mut df = DFParserBuilder::new(sql).build()?;
    let mut out = VecDeque::new();
    let mut expecting_delimiter = false;
    loop {
        while df.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if df.parser.peek_token() == Token::EOF {
            break;
        }
        if expecting_delimiter {
            let t = df.parser.peek_token();
            return Err(DataFusionError::SQL(
                Box::new(ParserError::ParserError(format!(
                    "expected end of statement, found {} at {}",
                    t.token, t.span.start
                ))),
                None,
            ));
        }
        let stmt = if is_create_model(&df.parser.peek_tokens::<2>()) {
            Stmt::CreateModel(create_model(&mut df.parser).map_err(sql_error)?)
        } else {
            Stmt::Sql(df.parse_statement()?)
        };
        out.push_back(stmt);
        expecting_delimiter = true;
    }
    Ok(out)
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

fn is_create_model(tokens: &[Token; 2]) -> bool {
    matches!(&tokens[0], Token::Word(w) if w.keyword == Keyword::CREATE)
        && matches!(&tokens[1], Token::Word(w) if w.value.eq_ignore_ascii_case("model"))
}

type Parser<'a> = datafusion::sql::sqlparser::parser::Parser<'a>;

fn create_model(p: &mut Parser) -> Result<CreateModel, ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    p.next_token(); // MODEL
    let name = p.parse_identifier()?.value;
    let mut options = Vec::new();
    if p.parse_keyword(Keyword::OPTIONS) {
        p.expect_token(&Token::LParen)?;
        options = p.parse_comma_separated(option)?;
        p.expect_token(&Token::RParen)?;
    }
    p.expect_keyword(Keyword::AS)?;
    let query = p.parse_query()?;
    Ok(CreateModel {
        name,
        options,
        query,
    })
}

/// `key = 'text' | number | identifier | [list, ...]`.
fn option(p: &mut Parser) -> Result<(String, String), ParserError> {
    let key = p.parse_identifier()?.value.to_ascii_lowercase();
    p.expect_token(&Token::Eq)?;
    let value = p.parse_expr()?;
    Ok((key.clone(), option_text(&key, &value)?))
}

fn option_text(key: &str, e: &Expr) -> Result<String, ParserError> {
    Ok(match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        Expr::UnaryOp { .. } => e.to_string(),
        Expr::Array(a) => {
            let items: Result<Vec<String>, ParserError> =
                a.elem.iter().map(|x| option_text(key, x)).collect();
            items?.join(",")
        }
        other => {
            return Err(ParserError::ParserError(format!(
                "CREATE MODEL option {key}: expected a literal, found {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_other_statements_keep_their_order() {
        let sql = "CREATE TABLE lake.t AS SELECT 1 AS x, 2.0 AS y;\n\
                   CREATE MODEL m OPTIONS (label = 'y', iterations = 10, features = ['x'], \
                   learning_rate = 0.3) AS SELECT x, y FROM lake.t;\n\
                   SELECT predict('m', 1)";
        let stmts = parse_script(sql).unwrap();
        assert_eq!(stmts.len(), 3);
        assert!(matches!(stmts[0], Stmt::Sql(_)));
        let Stmt::CreateModel(m) = &stmts[1] else {
            panic!("{:?}", stmts[1])
        };
        assert_eq!(m.name, "m");
        let opts: Vec<(&str, &str)> = m
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            opts,
            [
                ("label", "y"),
                ("iterations", "10"),
                ("features", "x"),
                ("learning_rate", "0.3")
            ]
        );
        assert_eq!(m.query.to_string(), "SELECT x, y FROM lake.t");
        assert!(matches!(stmts[2], Stmt::Sql(_)));
    }

    #[test]
    fn a_broken_create_model_says_where() {
        let err = parse_script("CREATE MODEL m OPTIONS (label) AS SELECT 1").unwrap_err();
        assert!(err.to_string().contains("Expected: ="), "{err}");
        let err = parse_script("CREATE MODEL m SELECT 1").unwrap_err();
        assert!(err.to_string().contains("Expected: AS"), "{err}");
    }
}

/// What a `CREATE MODEL`'s options ask for.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub selection: basin_ml::Selection,
    pub algorithm: basin_ml::Algorithm,
    pub params: basin_ml::Params,
    pub validation: basin_ml::Validation,
    pub validation_text: String,
    pub promote: bool,
}

const OPTIONS: &str = "label, algorithm, features, exclude, time_column, validation, stage";

impl TrainOptions {
    /// Read `options`, naming the model and the option in errors.
    pub fn from_options(
        model: &str,
        options: &[(String, String)],
    ) -> Result<TrainOptions, basin_ml::MlError> {
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut label = None;
        let mut out = TrainOptions {
            selection: basin_ml::Selection {
                label: String::new(),
                features: Vec::new(),
                time_column: None,
                exclude: Vec::new(),
            },
            algorithm: basin_ml::Algorithm::GbtRegressor,
            params: basin_ml::Params::default(),
            validation: basin_ml::Validation::Fraction(0.2),
            validation_text: "0.2".into(),
            promote: false,
        };
        for (k, v) in options {
            match k.as_str() {
                "label" => label = Some(v.clone()),
                "algorithm" => out.algorithm = basin_ml::Algorithm::parse(v)?,
                "features" => out.selection.features = list(v),
                "exclude" => out.selection.exclude = list(v),
                "time_column" => out.selection.time_column = Some(v.clone()),
                "validation" => {
                    out.validation = basin_ml::Validation::parse(v)?;
                    out.validation_text = v.clone();
                }
                "stage" => out.promote = stage(v)?,
                _ => out.params.set(k, v).map_err(|e| {
                    basin_ml::MlError::Invalid(format!(
                        "CREATE MODEL {model}: {e} (or an option: {OPTIONS})"
                    ))
                })?,
            }
        }
        out.selection.label = label.ok_or_else(|| {
            basin_ml::MlError::Invalid(format!(
                "CREATE MODEL {model} needs OPTIONS (label = '<column to predict>')"
            ))
        })?;
        Ok(out)
    }
}

fn stage(v: &str) -> Result<bool, basin_ml::MlError> {
    match v.to_ascii_lowercase().as_str() {
        "candidate" => Ok(false),
        "production" => Ok(true),
        _ => Err(basin_ml::MlError::Invalid(format!(
            "stage = '{v}': a new version is a candidate or goes straight to production"
        ))),
    }
}

impl crate::Engine {
    /// Run a `CREATE MODEL`: the query, then training off the async
    /// threads, then a new version in the registry.
    pub(crate) async fn create_model(&self, m: CreateModel) -> crate::Result<crate::Output> {
        let opts = TrainOptions::from_options(&m.name, &m.options)?;
        basin_ml::registry::check_name(&m.name)?;
        let query = Statement::Statement(Box::new(SqlStatement::Query(m.query.clone())));
        let plan = self.context().state().statement_to_plan(query).await?;
        let mut snapshot = self.snapshot(&plan)?;
        let batches = self
            .context()
            .execute_logical_plan(plan)
            .await?
            .collect()
            .await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        snapshot["rows"] = rows.into();
        let task = opts.clone();
        let (model, report) = tokio::task::spawn_blocking(move || {
            let data = basin_ml::Dataset::from_batches(&batches, &task.selection)?;
            basin_ml::train(&data, task.algorithm, &task.params, task.validation)
        })
        .await
        .map_err(|e| crate::SqlError::Invalid(format!("training stopped: {e}")))??;
        let lineage = basin_ml::Lineage {
            label: opts.selection.label.clone(),
            time_column: opts.selection.time_column.clone(),
            validation: opts.validation_text.clone(),
            query: m.query.to_string(),
            snapshot,
        };
        let registry = self.models().registry();
        let version = registry.register(&m.name, &model, lineage, report.clone())?;
        if opts.promote {
            registry.promote(&m.name, version)?;
        }
        let stage = if opts.promote {
            "production"
        } else {
            "candidate"
        };
        Ok(crate::Output::Message(trained_message(
            &m.name, version, stage, &model, &report,
        )))
    }

    /// The tables a plan reads, with each lake table's version.
    fn snapshot(&self, plan: &LogicalPlan) -> crate::Result<serde_json::Value> {
        let mut names = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                names.push(scan.table_name.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut tables = Vec::new();
        for name in names {
            let mut t = serde_json::json!({ "table": name.to_string() });
            if name.schema() == Some("lake") {
                if let Some(meta) = self.lake().meta(name.table())? {
                    t["version"] = meta.version.into();
                }
            }
            tables.push(t);
        }
        Ok(serde_json::json!({ "tables": tables }))
    }
}

/// One line on what was trained and how well it does.
fn trained_message(
    name: &str,
    version: u32,
    stage: &str,
    model: &basin_ml::Model,
    r: &basin_ml::Report,
) -> String {
    let held = match (&r.validation, r.validation_from) {
        (Some(v), Some(from)) => format!(
            ", {} held out from {}",
            v.rows,
            timestamp_us_to_datetime(from)
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
        (Some(v), None) => format!(", the last {} held out", v.rows),
        _ => String::new(),
    };
    let measured = r.validation.as_ref().unwrap_or(&r.train);
    let which = if r.validation.is_some() {
        "validation"
    } else {
        "training"
    };
    let top: Vec<String> = r
        .importance
        .iter()
        .take(5)
        .map(|(f, v)| format!("{f} {v:.2}"))
        .collect();
    format!(
        "model {name} version {version} ({stage}): {} on {} rows{held} in {:.1} s; {which} {}; top features: {}",
        model.algorithm.name(),
        r.train.rows,
        r.seconds,
        measured.summary(),
        top.join(", ")
    )
}
