//! What an administrator sets on an agent (API, CLI, import), validated before anything is
//! written: every field is checked and named in the error, so that a change is all or nothing.

use super::{validate_agent_number, validate_passcode, StoreError};
use crate::login::rules::Network;
use crate::login::Passcode;

/// Most station patterns or networks one agent can have.
const MAX_LIST: usize = 64;
/// Most agents one import may carry.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// The settable fields of an agent; `None` leaves a field as it is (a new agent gets the
/// default: enabled, anywhere, no default extension, the tenant's language).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// "Logon Stations" patterns (empty: any station).
    pub stations: Option<Vec<String>>,
    /// Networks the agent may log on from (empty: any).
    pub networks: Option<Vec<Network>>,
    pub default_extension: Option<String>,
    /// Prompt language; empty: the tenant's.
    pub language: Option<String>,
    pub must_change: Option<bool>,
}

impl AgentChanges {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |field: &str, why: String| Err(StoreError::Invalid(format!("{field}: {why}")));
        if let Some(n) = &self.name {
            if n.chars().count() > 100 || n.chars().any(char::is_control) {
                return bad(
                    "name",
                    "at most 100 characters, no control characters".into(),
                );
            }
        }
        if let Some(s) = &self.stations {
            if s.len() > MAX_LIST {
                return bad("stations", format!("at most {MAX_LIST} patterns"));
            }
            if let Some(p) = s.iter().find(|p| !station_like(p)) {
                return bad(
                    "stations",
                    format!(
                        "{p:?} is not a station pattern (1 to 128 characters, no spaces or commas)"
                    ),
                );
            }
        }
        if self.networks.as_ref().is_some_and(|n| n.len() > MAX_LIST) {
            return bad("networks", format!("at most {MAX_LIST} networks"));
        }
        if let Some(e) = &self.default_extension {
            if !e.is_empty() && !station_like(e) {
                return bad(
                    "default_extension",
                    format!("{e:?} is not a station (1 to 128 characters, no spaces or commas)"),
                );
            }
        }
        if let Some(l) = &self.language {
            let ok = l.len() <= 16 && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
            if !ok {
                return bad(
                    "language",
                    format!("{l:?} must be a lowercase name such as \"es\" or \"pt-br\""),
                );
            }
        }
        Ok(())
    }

    /// The names of the fields this change sets (for the audit log).
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                v.push(name)
            }
        };
        add(self.name.is_some(), "name");
        add(self.enabled.is_some(), "enabled");
        add(self.stations.is_some(), "stations");
        add(self.networks.is_some(), "networks");
        add(self.default_extension.is_some(), "default_extension");
        add(self.language.is_some(), "language");
        add(self.must_change.is_some(), "must_change");
        v
    }
}

fn station_like(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

/// Parses a list of networks (`10.0.0.0/8`, `192.0.2.7`), naming the field and the entry on
/// error.
pub fn parse_networks(list: &[String]) -> Result<Vec<Network>, StoreError> {
    list.iter()
        .map(|n| {
            n.parse()
                .map_err(|e| StoreError::Invalid(format!("networks: {n:?} is not a network: {e}")))
        })
        .collect()
}

/// One agent of an import: created when it does not exist (the passcode is then required),
/// else updated.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// Where it came from, for errors: the CSV line, or the JSON array index + 1.
    pub line: usize,
    pub number: String,
    pub passcode: Option<Passcode>,
    pub changes: AgentChanges,
}

impl ImportRow {
    /// The checks that need no database.
    pub(super) fn validate(&self) -> Result<(), StoreError> {
        validate_agent_number(&self.number)?;
        if let Some(p) = &self.passcode {
            validate_passcode(p).map_err(|e| StoreError::Invalid(format!("passcode: {e}")))?;
        }
        self.changes.validate()
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
}

/// The columns an import understands; `number` is required, the rest optional.
pub const IMPORT_COLUMNS: [&str; 9] = [
    "number",
    "name",
    "passcode",
    "enabled",
    "stations",
    "networks",
    "default_extension",
    "language",
    "must_change",
];

/// Parses an import: CSV with a header row naming the columns (lists inside a field separated
/// by `;` or spaces), or a JSON array of objects with the same names (lists as arrays).
/// The rows that parsed and one message per row that did not, with its line (CSV) or item
/// number (JSON); `Err` when the whole file is unusable.
pub fn parse_import(text: &str, json: bool) -> Result<(Vec<ImportRow>, Vec<String>), StoreError> {
    let (rows, errors) = if json {
        parse_json(text)?
    } else {
        parse_csv(text)?
    };
    if rows.is_empty() && errors.is_empty() {
        return Err(StoreError::Invalid("the import holds no agents".into()));
    }
    if rows.len() > MAX_IMPORT_ROWS {
        return Err(StoreError::Invalid(format!(
            "an import holds at most {MAX_IMPORT_ROWS} agents; this one has {}",
            rows.len()
        )));
    }
    Ok((rows, errors))
}

fn row_error(errors: &mut Vec<String>, line: usize, e: impl std::fmt::Display) {
    errors.push(format!("line {line}: {e}"));
}

fn parse_bool(field: &str, v: &str) -> Result<Option<bool>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "true" | "yes" | "y" => Ok(Some(true)),
        "0" | "false" | "no" | "n" => Ok(Some(false)),
        other => Err(format!("{field}: {other:?} is not true or false")),
    }
}

fn parse_csv(text: &str) -> Result<(Vec<ImportRow>, Vec<String>), StoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| StoreError::Invalid(format!("line 1: {e}")))?
        .clone();
    let mut columns = Vec::new();
    for h in headers.iter() {
        let Some(i) = IMPORT_COLUMNS
            .iter()
            .position(|c| c.eq_ignore_ascii_case(h))
        else {
            return Err(StoreError::Invalid(format!(
                "line 1: unknown column {h:?}; the columns are {}",
                IMPORT_COLUMNS.join(", ")
            )));
        };
        columns.push(i);
    }
    if !columns.contains(&0) {
        return Err(StoreError::Invalid(
            "line 1: the header must name a \"number\" column".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                row_error(&mut errors, line, e);
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut row = ImportRow {
            line,
            number: String::new(),
            passcode: None,
            changes: AgentChanges::default(),
        };
        let list = |v: &str| -> Vec<String> {
            v.split([';', ' '])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let mut problem = None;
        for (&col, value) in columns.iter().zip(record.iter()) {
            let c = &mut row.changes;
            let r: Result<(), String> = match IMPORT_COLUMNS[col] {
                "number" => {
                    row.number = value.to_string();
                    Ok(())
                }
                "name" => {
                    c.name = Some(value.to_string());
                    Ok(())
                }
                "passcode" => {
                    row.passcode = (!value.is_empty()).then(|| Passcode(value.to_string()));
                    Ok(())
                }
                "enabled" => parse_bool("enabled", value).map(|b| c.enabled = b),
                "must_change" => parse_bool("must_change", value).map(|b| c.must_change = b),
                "stations" => {
                    c.stations = Some(list(value));
                    Ok(())
                }
                "networks" => parse_networks(&list(value))
                    .map(|n| c.networks = Some(n))
                    .map_err(|e| e.to_string()),
                "default_extension" => {
                    c.default_extension = Some(value.to_string());
                    Ok(())
                }
                _ => {
                    c.language = Some(value.to_string());
                    Ok(())
                }
            };
            if let Err(e) = r {
                problem = Some(e);
                break;
            }
        }
        match problem.map_or_else(|| row.validate().map_err(|e| e.to_string()), Err) {
            Ok(()) => rows.push(row),
            Err(e) => row_error(&mut errors, line, e),
        }
    }
    Ok((rows, errors))
}

/// One agent of a JSON import (also the body of `POST /api/agents`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    /// 1 to 16 digits.
    pub number: String,
    /// 4 to 16 digits; required for a new agent.
    pub passcode: Option<String>,
    pub name: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// "Logon Stations" patterns, `*` matching anything; empty: any station.
    pub stations: Option<Vec<String>>,
    /// Networks (CIDR) the agent may log on from; empty: any.
    pub networks: Option<Vec<String>>,
    /// The station used when the agent presses # at the extension prompt.
    pub default_extension: Option<String>,
    /// Prompt language; empty: the tenant's.
    pub language: Option<String>,
    /// The agent must choose a new passcode at the next login.
    pub must_change: Option<bool>,
}

impl AgentInput {
    /// The settable fields of this agent.
    pub fn fields(&self) -> AgentFieldsInput {
        AgentFieldsInput {
            name: self.name.clone(),
            enabled: self.enabled,
            stations: self.stations.clone(),
            networks: self.networks.clone(),
            default_extension: self.default_extension.clone(),
            language: self.language.clone(),
            must_change: self.must_change,
        }
    }
}

/// The settable fields as JSON (`PATCH /api/agents/{number}`, imports); a field left out
/// stays as it is.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFieldsInput {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub stations: Option<Vec<String>>,
    pub networks: Option<Vec<String>>,
    pub default_extension: Option<String>,
    pub language: Option<String>,
    pub must_change: Option<bool>,
}

impl AgentFieldsInput {
    /// The validated change.
    pub fn into_changes(self) -> Result<AgentChanges, StoreError> {
        let c = AgentChanges {
            name: self.name,
            enabled: self.enabled,
            stations: self.stations,
            networks: self.networks.as_deref().map(parse_networks).transpose()?,
            default_extension: self.default_extension,
            language: self.language,
            must_change: self.must_change,
        };
        c.validate()?;
        Ok(c)
    }
}

fn parse_json(text: &str) -> Result<(Vec<ImportRow>, Vec<String>), StoreError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| StoreError::Invalid(format!("not a JSON array of agents: {e}")))?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let line = i + 1;
        let parsed = serde_path_to_error::deserialize::<_, AgentInput>(item)
            .map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    e.into_inner().to_string()
                } else {
                    format!("{path}: {}", e.into_inner())
                }
            })
            .and_then(|a| {
                let row = ImportRow {
                    line,
                    changes: a.fields().into_changes().map_err(|e| e.to_string())?,
                    number: a.number,
                    passcode: a.passcode.map(Passcode),
                };
                row.validate().map_err(|e| e.to_string())?;
                Ok(row)
            });
        match parsed {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(format!("item {line}: {e}")),
        }
    }
    Ok((rows, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_lists_and_errors_with_line_numbers() {
        let (rows, _) = parse_import(
            "number,name,passcode,stations,networks,enabled\n\
             1001,Ann,1234,desk-*@pbx;2001@pbx,10.0.0.0/8,yes\n\
             1002,\"Bo, Jr\",,,,\n",
            false,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].changes.stations.as_deref(),
            Some(&["desk-*@pbx".to_string(), "2001@pbx".to_string()][..])
        );
        assert_eq!(rows[0].changes.enabled, Some(true));
        assert_eq!(rows[1].changes.name.as_deref(), Some("Bo, Jr"));
        assert!(rows[1].passcode.is_none());

        let (_, lines) = parse_import(
            "number,passcode,networks\n1001,1234,\n12x,1234,\n1003,12,\n1004,1234,300.1.1.1/8\n",
            false,
        )
        .unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("line 3: "), "{lines:?}");
        assert!(lines[1].starts_with("line 4: passcode"), "{lines:?}");
        assert!(lines[2].starts_with("line 5: networks"), "{lines:?}");
        assert!(parse_import("nombre\n1\n", false)
            .unwrap_err()
            .to_string()
            .contains("unknown column \"nombre\""));
    }

    #[test]
    fn json_items_name_the_field() {
        let (rows, _) = parse_import(
            r#"[{"number":"1001","passcode":"1234","stations":["a@b"]},{"number":"1002"}]"#,
            true,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let err = parse_import(
            r#"[{"number":"1001","colour":"red"},{"number":"1002","enabled":"x"}]"#,
            true,
        )
        .unwrap()
        .1
        .join("; ");
        assert!(
            err.contains("item 1: colour: unknown field `colour`"),
            "{err}"
        );
        assert!(err.contains("item 2: enabled: invalid type"), "{err}");
    }
}
