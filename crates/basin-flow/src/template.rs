//! Templating of task fields: `{{ data_interval_start }}`,
//! `{{ data_interval_end }}`, `{{ ds }}` (the interval's start date),
//! `{{ run_id }}`, `{{ params.x }}` and `{{ outputs.task }}` (a finished
//! upstream task's small output). An unknown name is an error naming it.

use std::collections::BTreeMap;

use crate::error::{FlowError, Result};

/// The values a template may use.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub values: BTreeMap<String, String>,
}

impl Vars {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }
}

/// `text` with every `{{ name }}` replaced.
pub fn render(text: &str, vars: &Vars) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| FlowError::Template(format!("unclosed '{{{{' in `{text}`")))?;
        let name = after[..close].trim();
        let value = vars.values.get(name).ok_or_else(|| {
            let known: Vec<&str> = vars.values.keys().map(String::as_str).collect();
            FlowError::Template(format!(
                "unknown variable '{name}' (known: {})",
                known.join(", ")
            ))
        })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_and_unknown_ones_named() {
        let mut vars = Vars::default();
        vars.set("data_interval_start", "2026-01-01T00:00:00Z");
        vars.set("params.city", "nyc");
        let text = "WHERE ts >= '{{ data_interval_start }}' AND city = '{{params.city}}'";
        assert_eq!(
            render(text, &vars).unwrap(),
            "WHERE ts >= '2026-01-01T00:00:00Z' AND city = 'nyc'"
        );
        let e = render("{{ params.zone }}", &vars).unwrap_err().to_string();
        assert!(e.contains("unknown variable 'params.zone'"), "{e}");
        assert!(render("{{ oops", &vars).is_err());
        assert_eq!(render("no templates", &vars).unwrap(), "no templates");
    }
}
