//! The canonical text of a trial: the TOML a worker receives and whose BLAKE3 is the
//! trial's key ([`TrialConfig::to_toml_string`]), and each field's text as axis labels
//! and tables show it ([`TrialConfig::field_text`]).
//!
//! Both are written from one [`Canonical`] per key (see [`super::keys`]), so they cannot
//! disagree. **Stored sweeps are keyed by this text: it must not change** for any config
//! (`spec/tests/canonical.rs` pins it).

use super::TrialConfig;
use super::keys::KEYS;
use std::fmt::Write as _;

/// How one key's value is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Canonical {
    /// A string: quoted and escaped in TOML, bare as a label (`relu`, `l2:0.0001`).
    Quoted(String),
    /// A TOML literal, the same as a label (`0.1`, `[512, 256]`, `{ kind = "sgd", … }`).
    Literal(String),
    /// A table of `(key, TOML literal)` pairs: a `[key]` section at the end of the
    /// canonical TOML, `{ k = v, … }` as a label.
    Section(Vec<(&'static str, String)>),
    /// A key added after trials were stored: written only when its value is not the
    /// default, so that every trial that does not use it keeps its canonical TOML and
    /// key. Its label is the value's, default or not.
    UnlessDefault {
        /// The value's text.
        value: Box<Canonical>,
        /// Whether it is the key's default (then the TOML leaves the key out).
        is_default: bool,
    },
}

impl Canonical {
    /// The text of an axis label or a table cell.
    fn label(&self) -> String {
        match self {
            Canonical::Quoted(s) | Canonical::Literal(s) => s.clone(),
            Canonical::Section(pairs) => {
                let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", pairs.join(", "))
            }
            Canonical::UnlessDefault { value, .. } => value.label(),
        }
    }
}

impl TrialConfig {
    /// The canonical text of one field, as tables and axis labels show it: strings
    /// without quotes (`relu`, `l2:0.0001`), everything else as its TOML literal
    /// (`[512, 256]`, `true`, `{ kind = "sgd", lr = 0.01, … }`). `None` for an unknown
    /// key. Two values of a field are equal exactly when their texts are.
    pub fn field_text(&self, key: &str) -> Option<String> {
        KEYS.iter()
            .find(|k| k.name == key)
            .map(|k| (k.canonical)(self).label())
    }

    /// The canonical trial file: every key, in [`super::TRIAL_KEYS`] order (tables as
    /// sections at the end; `input_norm` and `init_scope` only when not their default),
    /// floats in their shortest exact form. Reads back to an equal
    /// config with [`TrialConfig::from_toml_str`] (for any config that passes
    /// [`TrialConfig::validate`] and whose seed fits in an `i64`, TOML's integer range).
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        let mut sections = String::new();
        for key in &KEYS {
            write_key(&mut out, &mut sections, key.name, (key.canonical)(self));
        }
        out.push_str(&sections);
        out
    }

    /// The bytes `key` takes in [`TrialConfig::to_toml_string`] (its line, or its
    /// section); `None` for an unknown key.
    pub(crate) fn canonical_bytes(&self, key: &str) -> Option<usize> {
        let key = KEYS.iter().find(|k| k.name == key)?;
        let (mut line, mut section) = (String::new(), String::new());
        write_key(&mut line, &mut section, key.name, (key.canonical)(self));
        Some(line.len() + section.len())
    }
}

/// Writes one key of the canonical TOML: a line to `out`, or a section to `sections`.
fn write_key(out: &mut String, sections: &mut String, name: &str, value: Canonical) {
    // Writing to a String cannot fail.
    match value {
        Canonical::Quoted(s) => {
            let _ = writeln!(out, "{name} = {}", toml_string(&s));
        }
        Canonical::Literal(s) => {
            let _ = writeln!(out, "{name} = {s}");
        }
        Canonical::Section(pairs) => {
            let _ = write!(sections, "\n[{name}]\n");
            for (k, v) in pairs {
                let _ = writeln!(sections, "{k} = {v}");
            }
        }
        Canonical::UnlessDefault { value, is_default } => {
            if !is_default {
                write_key(out, sections, name, *value);
            }
        }
    }
}

/// A TOML float literal that reads back exactly (`0.1`, `1e-5`, `1.0`, `nan`, `inf`).
pub(crate) fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Debug always has a '.' or an exponent, so it is a TOML float, not an integer.
        format!("{x:?}")
    }
}

/// A TOML basic string literal, quoted and escaped.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
