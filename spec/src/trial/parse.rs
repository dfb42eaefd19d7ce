//! TOML helpers shared by every parser: [`ConfigError`] and key paths, typed extraction
//! of values, syntax errors as one line, number formatting.

use crate::limits::Limit;
use std::fmt;
use std::path::Path;
use toml::{Table, Value};

/// A trial-file error: where (the key path, possibly prefixed with the file name) and why.
///
/// Displays as one line, `"{path}: {message}"`, or just the message when the path is
/// empty (e.g. a TOML syntax error in a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path (`optimizer.lr`, `hidden[1]`), prefixed by the file name when the
    /// error came from [`super::TrialConfig::from_file`] (`trial.toml: optimizer.lr`). May be
    /// empty.
    pub path: String,
    /// The reason, one line, without a trailing period.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`. Line breaks in `message` are folded into `"; "` so that the
    /// error always displays as one line.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: one_line(&message.into()),
        }
    }

    /// The same error, located in `file`: its path becomes `"<file>: <key path>"` (or just
    /// the file name when the key path is empty).
    pub fn in_file(self, file: &Path) -> Self {
        let file = file.display().to_string();
        let path = if self.path.is_empty() {
            file
        } else {
            format!("{file}: {}", self.path)
        };
        ConfigError {
            path,
            message: self.message,
        }
    }

    pub(crate) fn missing(path: &str) -> Self {
        ConfigError::new(path, "missing required key")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Folds `s` into one trimmed line without a trailing period.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    joined.strip_suffix('.').unwrap_or(&joined).to_owned()
}

/// The path of `key` inside the table at `path` (`optimizer` + `lr` → `optimizer.lr`).
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of element `index` of the array at `path` (`hidden` + 1 → `hidden[1]`).
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// A TOML value's type with its article, for messages: `"a string"`, `"an integer"`.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The error for a value of the wrong type: `expected {expected}, got a string`.
pub fn type_error(path: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError::new(path, format!("expected {expected}, got {}", describe(got)))
}

/// Refuses any key of `table` (at `path`) that is not in `known`:
/// `{path}.{key}: unknown key; expected one of …`.
pub fn check_keys(table: &Table, path: &str, known: &[&str]) -> Result<(), ConfigError> {
    check_keys_with(table, path, known, "unknown key")
}

pub(crate) fn check_keys_with(
    table: &Table,
    path: &str,
    known: &[&str],
    reason: &str,
) -> Result<(), ConfigError> {
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ConfigError::new(
            join_key(path, key),
            format!("{reason}; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Parses TOML text into a table. A syntax error becomes one line:
/// `line 3, column 9: <toml's message>`.
pub fn parse_toml_table(text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| syntax_error(text, &e))
}

fn syntax_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let message = one_line(err.message());
    let message = if message.is_empty() {
        "invalid TOML".to_owned()
    } else if message.contains("recursion") {
        // toml's own words ("recursion limit") do not say what is wrong with the text.
        format!("nested too deeply ({message})")
    } else {
        message
    };
    match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            // toml says only "duplicate key"; name it.
            let message = match text.get(span.clone()) {
                Some(key) if message == "duplicate key" && !key.contains('\n') => {
                    format!("duplicate key {}", key.trim())
                }
                _ => message,
            };
            ConfigError::new("", format!("line {line}, column {column}: {message}"))
        }
        None => ConfigError::new("", message),
    }
}

/// 1-based line and column (in characters) of byte offset `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Formats a float for messages and canonical text: the shortest representation that
/// reads back exactly, without a trailing `.0` (`1`, `0.1`, `1e-5`, `0.0001`).
pub(crate) fn fmt_num(x: f64) -> String {
    let s = format!("{x:?}");
    match s.strip_suffix(".0") {
        Some(stripped) => stripped.to_owned(),
        None => s,
    }
}

pub(crate) fn expect_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| type_error(path, "a string", value))
}

pub(crate) fn expect_int(value: &Value, path: &str) -> Result<i64, ConfigError> {
    value
        .as_integer()
        .ok_or_else(|| type_error(path, "an integer", value))
}

/// A float or an integer (`lr = 1` is allowed).
pub(crate) fn expect_number(value: &Value, path: &str) -> Result<f64, ConfigError> {
    match value {
        Value::Float(x) => Ok(*x),
        Value::Integer(i) => Ok(*i as f64),
        other => Err(type_error(path, "a number", other)),
    }
}

pub(crate) fn expect_bool(value: &Value, path: &str) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| type_error(path, "a boolean", value))
}

pub(crate) fn expect_array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], ConfigError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| type_error(path, "an array", value))
}

pub(crate) fn expect_table<'a>(value: &'a Value, path: &str) -> Result<&'a Table, ConfigError> {
    value
        .as_table()
        .ok_or_else(|| type_error(path, "a table", value))
}

/// Wraps a `Result<_, String>` check with the key path.
pub(crate) fn at<T>(path: &str, r: Result<T, String>) -> Result<T, ConfigError> {
    r.map_err(|m| ConfigError::new(path, m))
}

/// A count: an integer > 0 and within `limit`. `must be a positive integer, got 0`, or
/// `batch_size: 1000000000 examples; the limit is 1048576 (limits::MAX_BATCH_SIZE)`.
pub(crate) fn parse_count(value: &Value, path: &str, limit: &Limit) -> Result<u64, ConfigError> {
    let i = expect_int(value, path)?;
    if i <= 0 {
        return Err(ConfigError::new(
            path,
            format!("must be a positive integer, got {i}"),
        ));
    }
    let n = i as u64;
    limit.check(path, n)?;
    Ok(n)
}

/// The check of [`parse_count`] on a value already in a config.
pub(crate) fn check_count(path: &str, n: u64, limit: &Limit) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(ConfigError::new(path, "must be a positive integer, got 0"));
    }
    limit.check(path, n)
}
