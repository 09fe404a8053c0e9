//! A pipeline file: SQL statements, split and classified, with Basin's
//! streaming extensions taken out of the text before DataFusion sees it:
//! `WATERMARK FOR col AS col - INTERVAL ...` in a table's column list, and
//! window table functions `TABLE(TUMBLE(TABLE t, DESCRIPTOR(col), size))`,
//! `TABLE(HOP(TABLE t, DESCRIPTOR(col), slide, size))` and
//! `TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(col), gap))`, which
//! become references to generated tables (see [`crate::window`]).

use regex::Regex;

use crate::error::{Result, StreamError};
use crate::window::{WindowKind, WindowSpec};

/// One statement of the file and where it starts.
#[derive(Debug, Clone)]
pub struct Statement {
    /// 1-based line of the statement's first character.
    pub line: usize,
    pub kind: StatementKind,
    /// The SQL as DataFusion will see it (extensions removed or rewritten).
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `CREATE ...`: a source, a sink, a view; `watermark` when declared.
    Create {
        watermark: Option<Watermark>,
        /// A column declared `name AS PROCTIME()`.
        proctime: Option<String>,
    },
    /// `INSERT INTO sink SELECT ...`: a job.
    Insert,
    /// A bare query: its rows are printed.
    Query,
    /// Anything else (`SET`, ...), run as is.
    Other,
}

/// `WATERMARK FOR column AS column - INTERVAL 'n' UNIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Watermark {
    pub column: String,
    /// How far behind the largest event time seen the watermark stays.
    pub delay_ms: i64,
}

/// A window table function found in a query, replaced by `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUse {
    pub name: String,
    pub source: String,
    pub spec: WindowSpec,
}

/// A parsed pipeline file.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub statements: Vec<Statement>,
    pub windows: Vec<WindowUse>,
}

impl Script {
    /// Split and classify `text`; errors name the statement's line.
    pub fn parse(text: &str) -> Result<Script> {
        let mut script = Script::default();
        for (line, raw) in split_statements(text) {
            let at = |message: String| StreamError::Script {
                at: format!("line {line}"),
                message,
            };
            let first = first_word(&strip_comments(&raw));
            let (kind, sql) = match first.as_str() {
                "CREATE" => {
                    let (sql, watermark) = extract_watermark(&raw).map_err(at)?;
                    let (sql, proctime) = extract_proctime(&sql);
                    (
                        StatementKind::Create {
                            watermark,
                            proctime,
                        },
                        sql,
                    )
                }
                "INSERT" | "SELECT" | "WITH" => {
                    let sql = script.rewrite_windows(&raw).map_err(at)?;
                    let kind = if first == "INSERT" {
                        StatementKind::Insert
                    } else {
                        StatementKind::Query
                    };
                    (kind, sql)
                }
                _ => (StatementKind::Other, raw.clone()),
            };
            script.statements.push(Statement { line, kind, sql });
        }
        if script.statements.is_empty() {
            return Err(StreamError::Script {
                at: "pipeline".into(),
                message: "the file holds no SQL statement".into(),
            });
        }
        Ok(script)
    }

    /// Replace each window table function by a generated table name.
    fn rewrite_windows(&mut self, sql: &str) -> std::result::Result<String, String> {
        let re = Regex::new(r"(?i)\bTABLE\s*\(\s*(TUMBLE|HOP|SESSION)\s*\(").expect("valid regex");
        let mut out = sql.to_string();
        while let Some(m) = re.find(&out) {
            let caps = re.captures(&out[m.start()..]).expect("matched");
            let function = caps[1].to_ascii_uppercase();
            let open = m.end() - 1; // the '(' after TUMBLE
            let inner_end = matching_paren(&out, open)
                .ok_or_else(|| format!("unbalanced parentheses after {function}("))?;
            let outer_end = out[inner_end + 1..]
                .find(')')
                .map(|i| inner_end + 1 + i)
                .ok_or_else(|| format!("TABLE({function}(...)) is missing its closing ')'"))?;
            let args = split_top_level(&out[open + 1..inner_end]);
            let name = format!("__window_{}", self.windows.len());
            let (source, spec) = window_args(&function, &args)?;
            self.windows.push(WindowUse {
                name: name.clone(),
                source,
                spec,
            });
            out.replace_range(m.start()..=outer_end, &name);
        }
        Ok(out)
    }
}

/// Parse the arguments of TUMBLE, HOP or SESSION.
fn window_args(
    function: &str,
    args: &[String],
) -> std::result::Result<(String, WindowSpec), String> {
    let usage = match function {
        "TUMBLE" => "TUMBLE(TABLE t, DESCRIPTOR(time_col), size)",
        "HOP" => "HOP(TABLE t, DESCRIPTOR(time_col), slide, size)",
        _ => "SESSION(TABLE t [PARTITION BY key, ...], DESCRIPTOR(time_col), gap)",
    };
    let want = if function == "HOP" { 4 } else { 3 };
    if args.len() != want {
        return Err(format!("{function} takes {want} arguments: {usage}"));
    }
    let table_re =
        Regex::new(r"(?is)^TABLE\s+([\w.]+)(?:\s+PARTITION\s+BY\s+(.+))?$").expect("valid regex");
    let caps = table_re
        .captures(args[0].trim())
        .ok_or_else(|| format!("first argument of {function} must be TABLE name: {usage}"))?;
    let source = caps[1].to_string();
    let partition_by: Vec<String> = caps
        .get(2)
        .map(|m| m.as_str().split(',').map(|s| ident(s.trim())).collect())
        .unwrap_or_default();
    let desc_re =
        Regex::new(r#"(?is)^DESCRIPTOR\s*\(\s*(\w+|"[^"]+")\s*\)$"#).expect("valid regex");
    let time_col = desc_re
        .captures(args[1].trim())
        .map(|c| ident(&c[1]))
        .ok_or_else(|| {
            format!("second argument of {function} must be DESCRIPTOR(column): {usage}")
        })?;
    if !partition_by.is_empty() && function != "SESSION" {
        return Err(format!("PARTITION BY is only for SESSION: {usage}"));
    }
    let kind = match function {
        "TUMBLE" => WindowKind::Tumble {
            size_ms: interval_ms(&args[2])?,
        },
        "HOP" => hop_kind(interval_ms(&args[2])?, interval_ms(&args[3])?)?,
        _ => WindowKind::Session {
            gap_ms: interval_ms(&args[2])?,
            partition_by,
        },
    };
    Ok((source, WindowSpec { time_col, kind }))
}

fn hop_kind(slide_ms: i64, size_ms: i64) -> std::result::Result<WindowKind, String> {
    if slide_ms > size_ms {
        return Err(format!(
            "HOP slide ({slide_ms} ms) is longer than its size ({size_ms} ms): rows between windows would be lost"
        ));
    }
    Ok(WindowKind::Hop { slide_ms, size_ms })
}

/// Milliseconds of `INTERVAL 'n' UNIT` or `INTERVAL 'n UNIT'`.
pub fn interval_ms(text: &str) -> std::result::Result<i64, String> {
    let re = Regex::new(r"(?is)^\s*INTERVAL\s+'\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*'\s*([a-z]*)\s*$")
        .expect("valid regex");
    let caps = re
        .captures(text)
        .ok_or_else(|| format!("expected INTERVAL 'n' UNIT, got `{}`", text.trim()))?;
    let n: f64 = caps[1]
        .parse()
        .map_err(|_| format!("bad number in `{text}`"))?;
    let unit = if caps[2].is_empty() {
        &caps[3]
    } else {
        &caps[2]
    };
    let ms = match unit.to_ascii_lowercase().trim_end_matches('s') {
        "millisecond" | "m" => 1.0,
        "second" | "" => 1_000.0,
        "minute" | "min" => 60_000.0,
        "hour" | "h" => 3_600_000.0,
        "day" | "d" => 86_400_000.0,
        other => {
            return Err(format!(
                "unknown interval unit `{other}` in `{}`",
                text.trim()
            ))
        }
    };
    let value = (n * ms).round() as i64;
    if value <= 0 {
        return Err(format!("interval `{}` must be positive", text.trim()));
    }
    Ok(value)
}

/// Remove `, WATERMARK FOR c AS expr` from a column list.
fn extract_watermark(sql: &str) -> std::result::Result<(String, Option<Watermark>), String> {
    let re = Regex::new(r"(?i),\s*WATERMARK\s+FOR\s+").expect("valid regex");
    let Some(m) = re.find(sql) else {
        return Ok((sql.to_string(), None));
    };
    let rest = &sql[m.end()..];
    let end = clause_end(rest).ok_or("WATERMARK clause is not inside a column list")?;
    let clause = &rest[..end];
    let re = Regex::new(r#"(?is)^(\w+|"[^"]+")\s+AS\s+(\w+|"[^"]+")\s*(?:-\s*(INTERVAL.+))?$"#)
        .expect("valid regex");
    let caps = re.captures(clause.trim()).ok_or_else(|| {
        format!(
            "expected WATERMARK FOR col AS col - INTERVAL 'n' SECOND, got `WATERMARK FOR {}`",
            clause.trim()
        )
    })?;
    let column = ident(&caps[1]);
    if ident(&caps[2]) != column {
        return Err(format!(
            "WATERMARK FOR {column} must be computed from {column} itself, not {}",
            &caps[2]
        ));
    }
    let delay_ms = match caps.get(3) {
        Some(i) => interval_ms(i.as_str())?,
        None => 0,
    };
    let stripped = format!("{}{}", &sql[..m.start()], &rest[end..]);
    Ok((stripped, Some(Watermark { column, delay_ms })))
}

/// Replace a column `name AS PROCTIME()` by `name TIMESTAMP` (the
/// source fills it; see [`crate::proctime`]).
fn extract_proctime(sql: &str) -> (String, Option<String>) {
    let re =
        Regex::new(r#"(?i)([(,]\s*)(\w+|"[^"]+")\s+AS\s+PROCTIME\s*\(\s*\)"#).expect("valid regex");
    let Some(caps) = re.captures(sql) else {
        return (sql.to_string(), None);
    };
    let name = ident(&caps[2]);
    let replaced = re.replace(sql, format!("${{1}}{} TIMESTAMP", &caps[2]).as_str());
    (replaced.into_owned(), Some(name))
}

/// A SQL identifier as DataFusion resolves it: quoted keeps its case,
/// unquoted is lower-cased.
fn ident(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => text.to_lowercase(),
    }
}

/// Where a clause in a column list ends: the next top-level ',' or ')'.
fn clause_end(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth == 0 => return Some(i),
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// The index of the ')' closing the '(' at `open`.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in text[open..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Split on commas outside parentheses and quotes.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(text[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim().to_string());
    parts
}

fn first_word(sql: &str) -> String {
    sql.split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Split on `;` outside quotes and comments; each statement with the line
/// it starts on. Comments are kept inside statements (DataFusion skips them).
pub fn split_statements(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut i, mut start, mut line) = (0, 0, 1);
    let mut start_line = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => line += 1,
            b'\'' | b'"' => {
                start_line.get_or_insert(line);
                let close = text[i + 1..]
                    .find(c as char)
                    .map(|j| i + 1 + j)
                    .unwrap_or(bytes.len() - 1);
                line += text[i..=close].matches('\n').count();
                i = close;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..]
                    .find('\n')
                    .map(|j| i + j - 1)
                    .unwrap_or(bytes.len() - 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let close = text[i..]
                    .find("*/")
                    .map(|j| i + j + 1)
                    .unwrap_or(bytes.len() - 1);
                line += text[i..=close].matches('\n').count();
                i = close;
            }
            b';' => {
                push_statement(&mut out, &text[start..i], start_line.take());
                start = i + 1;
            }
            c if !c.is_ascii_whitespace() => {
                start_line.get_or_insert(line);
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut out, &text[start..], start_line);
    out
}

fn push_statement(out: &mut Vec<(usize, String)>, sql: &str, line: Option<usize>) {
    if let Some(line) = line {
        if !first_word(&strip_comments(sql)).is_empty() {
            out.push((line, sql.trim().to_string()));
        }
    }
}

fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = "-- bids per auction\n\
        CREATE EXTERNAL TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP,\n\
          WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)\n\
        STORED AS TOPIC LOCATION 'bid';\n\
        INSERT INTO out SELECT auction, count(*) AS n, window_start\n\
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))\n\
        GROUP BY auction, window_start, window_end;";

    #[test]
    fn watermark_and_windows_are_taken_out() {
        let script = Script::parse(PIPELINE).unwrap();
        assert_eq!(script.statements.len(), 2);
        let create = &script.statements[0];
        assert_eq!(create.line, 2);
        assert!(
            !create.sql.to_uppercase().contains("WATERMARK"),
            "{}",
            create.sql
        );
        assert!(
            create.sql.contains("date_time TIMESTAMP)"),
            "{}",
            create.sql
        );
        let watermark = Watermark {
            column: "date_time".into(),
            delay_ms: 4000,
        };
        assert_eq!(
            create.kind,
            StatementKind::Create {
                watermark: Some(watermark),
                proctime: None,
            }
        );
        let insert = &script.statements[1];
        assert_eq!(insert.line, 5);
        assert!(insert.sql.contains("FROM __window_0\n"), "{}", insert.sql);
        assert_eq!(script.windows[0].source, "bid");
        assert_eq!(
            script.windows[0].spec.kind,
            WindowKind::Tumble { size_ms: 10_000 }
        );
    }

    #[test]
    fn proctime_columns_become_timestamps() {
        let script = Script::parse(
            "CREATE EXTERNAL TABLE b (bidder BIGINT, p_time AS PROCTIME()) STORED AS TOPIC LOCATION 'b';",
        )
        .unwrap();
        let create = &script.statements[0];
        assert!(
            create.sql.contains("(bidder BIGINT, p_time TIMESTAMP)"),
            "{}",
            create.sql
        );
        assert_eq!(
            create.kind,
            StatementKind::Create {
                watermark: None,
                proctime: Some("p_time".into()),
            }
        );
    }

    #[test]
    fn hop_and_session_arguments() {
        let mut script = Script::default();
        let sql = script
            .rewrite_windows(
                "SELECT * FROM TABLE(HOP(TABLE b, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10 seconds')) \
                 JOIN TABLE(SESSION(TABLE p PARTITION BY id, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) ON true",
            )
            .unwrap();
        assert_eq!(sql, "SELECT * FROM __window_0 JOIN __window_1 ON true");
        assert_eq!(
            script.windows[0].spec.kind,
            WindowKind::Hop {
                slide_ms: 2000,
                size_ms: 10_000
            }
        );
        assert_eq!(
            script.windows[1].spec.kind,
            WindowKind::Session {
                gap_ms: 60_000,
                partition_by: vec!["id".into()]
            }
        );
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let err = Script::parse(
            "SELECT 1;\nSELECT * FROM TABLE(TUMBLE(TABLE b, ts, INTERVAL '1' SECOND))",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("DESCRIPTOR"),
            "{err}"
        );
        let err = interval_ms("INTERVAL '3' FORTNIGHT").unwrap_err();
        assert!(err.contains("fortnight"), "{err}");
        let err = Script::parse("-- nothing\n").unwrap_err().to_string();
        assert!(err.contains("no SQL statement"), "{err}");
        let err =
            Script::parse("CREATE TABLE t (a INT, WATERMARK FOR a AS b - INTERVAL '1' SECOND)")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("line 1") && err.contains("from a itself"),
            "{err}"
        );
    }

    #[test]
    fn splitting_respects_quotes_and_comments() {
        let parts = split_statements("SELECT ';'; -- a; comment\n\n/* x; */ SELECT 2;");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (1, "SELECT ';'".to_string()));
        assert_eq!(parts[1].0, 3);
    }
}
