//! `CREATE TABLE lake.x PARTITIONED BY (a, b) AS SELECT ...` is not in
//! DataFusion's grammar for CTAS, so the clause is lifted out of the SQL text
//! before parsing and replaced by spaces, which keeps every line and column
//! of the rest of the statement where the user wrote it (error positions
//! stay right).

use regex::Regex;

/// The hive partition columns declared for one `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub table: String,
    pub columns: Vec<String>,
}

/// The SQL with every CTAS `PARTITIONED BY (...)` blanked, and the specs.
pub fn extract_partitioned_by(sql: &str) -> (String, Vec<PartitionSpec>) {
    let re = Regex::new(
        r#"(?is)\bcreate\s+(?:or\s+replace\s+)?table\s+(?:if\s+not\s+exists\s+)?([\w."]+)\s+(partitioned\s+by\s*\(([^)]*)\))"#,
    )
    .expect("valid regex");
    let mut out = sql.to_string();
    let mut specs = Vec::new();
    for caps in re.captures_iter(sql) {
        let clause = caps.get(2).expect("group 2");
        let columns = caps[3]
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        specs.push(PartitionSpec {
            table: caps[1].to_string(),
            columns,
        });
        let blank: String = sql[clause.range()]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(clause.range(), &blank);
    }
    (out, specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifts_the_clause_and_keeps_positions() {
        let sql =
            "CREATE TABLE lake.t PARTITIONED BY (day, \"zone\")\nAS SELECT 1 AS day, 2 AS zone";
        let (out, specs) = extract_partitioned_by(sql);
        assert_eq!(out.len(), sql.len());
        assert_eq!(out.lines().nth(1), sql.lines().nth(1));
        assert!(!out.to_lowercase().contains("partitioned"));
        assert_eq!(
            specs,
            vec![PartitionSpec {
                table: "lake.t".into(),
                columns: vec!["day".into(), "zone".into()]
            }]
        );
    }

    #[test]
    fn leaves_external_tables_alone() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS PARQUET PARTITIONED BY (day) LOCATION '/x'";
        let (out, specs) = extract_partitioned_by(sql);
        assert_eq!(out, sql);
        assert!(specs.is_empty());
    }
}
