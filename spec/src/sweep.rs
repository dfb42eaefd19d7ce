//! Sweep specs: a trial file's keys, `seeds = [..]`, and a `[grid]` of lists, expanded
//! into the Cartesian product × seeds.
//!
//! ```toml
//! name    = "activations"
//! dataset = "synthetic:glyphs"
//! seeds   = [0, 1, 2]
//! [grid]
//! activation = ["sigmoid", "tanh", "relu"]
//! batchnorm  = [false, true]
//! ```
//!
//! A nested field can be an axis of its own with a dotted key (`"optimizer.lr" = [0.01,
//! 0.1]`, or TOML's `optimizer.lr = [..]`; see [`NESTED_GRID_KEYS`]): each value is
//! merged into the trial's table and labelled short (`lr=0.01`).
//!
//! Every value is parsed by the trial's own field parsers
//! ([`TrialConfig::set_field`]), so errors carry paths such as
//! `grid.activation[2]: unknown activation "relux"; expected one of …`.
//!
//! **Expansion order** is fixed: the grid's axes in [`TRIAL_KEYS`] order (not the order
//! of the file), the last axis varying fastest, and the seeds fastest of all. Each trial
//! gets the sweep's `name`, its canonical TOML ([`TrialConfig::to_toml_string`]) and its
//! key: the hex BLAKE3 of that text ([`trial_key`]).

use crate::SpecError;
use crate::limits::{self, limit};
use crate::trial::{
    ConfigError, TRIAL_KEYS, TrialConfig, check_keys, join_index, join_key, parse_seed,
    parse_toml_table, type_error,
};
use std::collections::HashMap;
use toml::{Table, Value};

/// The most trials a grid may expand into unless the caller says otherwise
/// ([`limits::MAX_TRIALS`]).
pub const DEFAULT_MAX_TRIALS: u64 = limits::MAX_TRIALS;

/// The keys a `[grid]` may vary: every trial key but `name` (the sweep's) and `seed`
/// (given by `seeds`).
pub fn grid_keys() -> Vec<&'static str> {
    TRIAL_KEYS
        .into_iter()
        .filter(|k| *k != "name" && *k != "seed")
        .collect()
}

/// The nested fields a `[grid]` may vary on their own, as dotted keys
/// (`"optimizer.lr" = [0.01, 0.1]`, or TOML's `optimizer.lr = [..]`): each value is
/// merged into the trial's table (the top-level one, or the default), and its axis label
/// is short (`lr=0.01`).
pub const NESTED_GRID_KEYS: [&str; 7] = [
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "optimizer.betas",
    "optimizer.eps",
    "gradcheck.layer",
    "gradcheck.samples",
];

/// The parent keys of [`NESTED_GRID_KEYS`].
const NESTED_PARENTS: [&str; 2] = ["optimizer", "gradcheck"];

/// The top-level keys of a sweep spec: the trial keys with `seeds` for `seed`, and
/// `grid`.
pub fn sweep_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = TRIAL_KEYS.into_iter().filter(|k| *k != "seed").collect();
    keys.extend(["seeds", "grid"]);
    keys
}

/// A trial's key: the hex BLAKE3 hash of its canonical TOML.
pub fn trial_key(canonical_toml: &str) -> String {
    blake3::hash(canonical_toml.as_bytes()).to_hex().to_string()
}

/// One axis of the grid: a key and the canonical text of each of its values
/// ([`TrialConfig::field_text`]), in the order of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The trial key it varies (`activation`).
    pub key: String,
    /// Each value's canonical text (`relu`, `[512, 256]`).
    pub labels: Vec<String>,
    values: Vec<Value>,
    /// The bytes each value takes in a trial's canonical TOML (for a nested field: its
    /// parent key's bytes with that value).
    bytes: Vec<usize>,
    /// For a dotted key: the parent key and the field (`optimizer`, `lr`).
    nested: Option<(&'static str, &'static str)>,
}

impl Axis {
    /// Sets value `c` of this axis in `config` (a nested field is merged into its
    /// parent's table); errors name `grid.<key>[c]`.
    fn apply(&self, config: &mut TrialConfig, c: usize) -> Result<(), ConfigError> {
        let path = join_index(&join_key("grid", &self.key), c);
        match self.nested {
            None => config.set_field(&self.key, &self.values[c], &path),
            Some((parent, field)) => set_nested(config, parent, field, &self.values[c], &path),
        }
    }
}

/// The table a table-valued key holds in `config`, as TOML.
fn parent_table(config: &TrialConfig, parent: &str) -> Table {
    let text = config.field_text(parent).unwrap_or_default();
    format!("v = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default()
}

/// Sets `parent.field = value` in `config`, keeping the parent's other fields; an error
/// about the field is reported at `path` (`grid.optimizer.lr[1]`).
fn set_nested(
    config: &mut TrialConfig,
    parent: &str,
    field: &str,
    value: &Value,
    path: &str,
) -> Result<(), ConfigError> {
    let mut table = parent_table(config, parent);
    table.insert(field.to_owned(), value.clone());
    let field_path = join_key(parent, field);
    config
        .set_field(parent, &Value::Table(table), parent)
        .map_err(|e| {
            let at = if e.path == field_path || e.path.starts_with(&format!("{field_path}[")) {
                format!("{path}{}", &e.path[field_path.len()..])
            } else {
                format!("{path} ({})", e.path)
            };
            ConfigError::new(at, e.message)
        })
}

/// A nested field's axis label: `lr=0.01`, `layer=linear5`.
fn nested_label(config: &TrialConfig, parent: &str, field: &str) -> String {
    let value = parent_table(config, parent)
        .get(field)
        .map(|v| match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .unwrap_or_default();
    format!("{field}={value}")
}

/// `[grid]` with TOML's dotted tables (`optimizer.lr = [..]` is `optimizer = { lr = [..] }`)
/// flattened into dotted keys (`"optimizer.lr"`).
fn flatten_grid(grid: &Table) -> Table {
    let mut flat = Table::new();
    for (key, value) in grid {
        match value {
            Value::Table(inner) if NESTED_PARENTS.contains(&key.as_str()) => {
                for (field, v) in inner {
                    flat.insert(format!("{key}.{field}"), v.clone());
                }
            }
            _ => {
                flat.insert(key.clone(), value.clone());
            }
        }
    }
    flat
}

/// A parsed sweep spec, not yet expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// The sweep's name (also every trial's `name`).
    pub name: String,
    /// The seeds, in the order given; each grid point runs once per seed.
    pub seeds: Vec<u64>,
    /// The grid's axes in [`TRIAL_KEYS`] order; empty when there is no `[grid]`.
    pub axes: Vec<Axis>,
    /// Every top-level key applied to the defaults (its `seed` is meaningless).
    base: TrialConfig,
}

/// One trial of an expanded sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTrial {
    /// 0-based position in the expansion order.
    pub index: usize,
    /// The validated config.
    pub config: TrialConfig,
    /// Its canonical TOML, what workers receive.
    pub toml: String,
    /// [`trial_key`] of `toml`.
    pub key: String,
    /// For each of the spec's axes, the index of this trial's value.
    pub choice: Vec<usize>,
}

impl SweepSpec {
    /// Parses and checks sweep-spec text (every value on its own; combinations are
    /// checked by [`SweepSpec::expand`]). Text over [`limits::MAX_TEXT_BYTES`] is refused
    /// before it is parsed.
    pub fn from_toml_str(text: &str) -> Result<SweepSpec, SpecError> {
        limits::check_text_size("spec", text.len() as u64)?;
        SweepSpec::from_table(&parse_toml_table(text)?)
    }

    /// Parses and checks a sweep spec from a TOML table.
    pub fn from_table(table: &Table) -> Result<SweepSpec, SpecError> {
        if table.contains_key("seed") {
            return Err(ConfigError::new(
                "seed",
                "a sweep takes a list of seeds: write seeds = [..]",
            )
            .into());
        }
        check_keys(table, "", &sweep_keys())?;
        let grid = match table.get("grid") {
            Some(value) => flatten_grid(
                value
                    .as_table()
                    .ok_or_else(|| type_error("grid", "a table", value))?,
            ),
            None => Table::new(),
        };
        let grid = &grid;
        for key in grid.keys() {
            if let Some((parent, _)) = key.split_once('.')
                && !NESTED_GRID_KEYS.contains(&key.as_str())
            {
                let fields: Vec<&str> = NESTED_GRID_KEYS
                    .iter()
                    .copied()
                    .filter(|k| k.split_once('.').is_some_and(|(p, _)| p == parent))
                    .collect();
                return Err(ConfigError::new(
                    join_key("grid", key),
                    if fields.is_empty() {
                        format!(
                            "unknown key; a grid varies these nested fields on their own: {}",
                            NESTED_GRID_KEYS.join(", ")
                        )
                    } else {
                        format!("unknown nested key; expected one of {}", fields.join(", "))
                    },
                )
                .into());
            }
        }
        let mut known = grid_keys();
        known.extend(NESTED_GRID_KEYS);
        check_keys(grid, "grid", &known)?;

        let mut base = TrialConfig {
            name: "sweep".to_owned(),
            ..TrialConfig::default()
        };
        for key in TRIAL_KEYS {
            if let Some(value) = table.get(key) {
                base.set_field(key, value, key)?;
            }
        }
        if !table.contains_key("dataset") && !grid.contains_key("dataset") {
            return Err(ConfigError::new("dataset", "missing required key").into());
        }

        let seeds = match table.get("seeds") {
            Some(value) => parse_seeds(value)?,
            None => vec![0],
        };

        let mut axes = Vec::new();
        for key in grid_keys() {
            let nested = NESTED_GRID_KEYS
                .iter()
                .filter_map(|k| k.split_once('.').filter(|(p, _)| *p == key));
            let keys = std::iter::once((key, None))
                .chain(nested.map(|(parent, field)| (parent, Some(field))));
            for (key, field) in keys {
                let name = match field {
                    Some(f) => format!("{key}.{f}"),
                    None => key.to_owned(),
                };
                let Some(value) = grid.get(&name) else {
                    continue;
                };
                let path = join_key("grid", &name);
                if field.is_none() && table.contains_key(key) {
                    return Err(ConfigError::new(
                        path,
                        "also given at the top level; give it in one place",
                    )
                    .into());
                }
                if field.is_some() && grid.contains_key(key) {
                    return Err(ConfigError::new(
                        path,
                        format!("grid.{key} varies the whole table already; give one of the two"),
                    )
                    .into());
                }
                let items = value
                    .as_array()
                    .ok_or_else(|| type_error(&path, "an array of values", value))?;
                if items.is_empty() {
                    return Err(
                        ConfigError::new(path, "empty list; give at least one value").into(),
                    );
                }
                let nested = field.map(|f| (key, f));
                let mut axis = Axis {
                    key: name,
                    labels: Vec::with_capacity(items.len()),
                    values: items.clone(),
                    bytes: Vec::with_capacity(items.len()),
                    nested,
                };
                let mut seen: HashMap<String, usize> = HashMap::with_capacity(items.len());
                for i in 0..items.len() {
                    let mut config = base.clone();
                    axis.apply(&mut config, i)?;
                    let label = match nested {
                        Some((parent, field)) => nested_label(&config, parent, field),
                        None => config.field_text(key).unwrap_or_default(),
                    };
                    if let Some(&j) = seen.get(&label) {
                        return Err(ConfigError::new(
                            join_index(&path, i),
                            format!("the same value as {} ({label})", join_index(&path, j)),
                        )
                        .into());
                    }
                    seen.insert(label.clone(), i);
                    axis.labels.push(label);
                    axis.bytes
                        .push(config.canonical_bytes(key).unwrap_or_default());
                }
                axes.push(axis);
            }
        }
        Ok(SweepSpec {
            name: base.name.clone(),
            seeds,
            axes,
            base,
        })
    }

    /// How many trials the spec expands into (saturating at `u64::MAX`).
    pub fn trial_count(&self) -> u64 {
        self.axes
            .iter()
            .map(|a| a.labels.len() as u64)
            .chain([self.seeds.len() as u64])
            .fold(1u64, u64::saturating_mul)
    }

    /// The bytes of canonical TOML the expanded trials come to, all together, computed
    /// without expanding them (saturating at `u64::MAX`): every key's text is the same
    /// in every trial but an axis's, which takes each of its values equally often.
    pub fn expanded_bytes(&self) -> u64 {
        let count = u128::from(self.trial_count());
        let mut fixed = self.base.to_toml_string().len() as u128;
        let mut varying: u128 = 0;
        // A nested axis changes its parent's bytes by its value's length less the base
        // value's; several nested axes on one parent add up their changes.
        let mut nested_delta: i128 = 0;
        for axis in &self.axes {
            let each = count / axis.bytes.len() as u128;
            if let Some((parent, _)) = axis.nested {
                let base = self.base.canonical_bytes(parent).unwrap_or_default() as i128;
                let sum: i128 = axis.bytes.iter().map(|&b| b as i128 - base).sum();
                nested_delta += each as i128 * sum;
                continue;
            }
            fixed -= self.base.canonical_bytes(&axis.key).unwrap_or_default() as u128;
            varying += each * axis.bytes.iter().map(|&b| b as u128).sum::<u128>();
        }
        let varying = (varying as i128 + nested_delta).max(0) as u128;
        fixed -= self.base.canonical_bytes("seed").unwrap_or_default() as u128;
        let mut seeded = self.base.clone();
        let seed_bytes: u128 = self
            .seeds
            .iter()
            .map(|&seed| {
                seeded.seed = seed;
                seeded.canonical_bytes("seed").unwrap_or_default() as u128
            })
            .sum();
        let seeded_varying = count / self.seeds.len().max(1) as u128 * seed_bytes;
        u64::try_from(count * fixed + varying + seeded_varying).unwrap_or(u64::MAX)
    }

    /// Expands the grid × seeds into validated, keyed trials, in the module's fixed
    /// order. Refused when there are more than `limit` trials, when their canonical TOML
    /// would exceed [`limits::MAX_SWEEP_BYTES`] (both checked before anything is
    /// expanded), when a combination is invalid (the error names the trial and its grid
    /// values) or when two trials have the same key.
    pub fn expand(&self, limit: u64) -> Result<Vec<SweepTrial>, SpecError> {
        let count = self.trial_count();
        if count > limit {
            return Err(SpecError::TooManyTrials { count, limit });
        }
        let bytes = self.expanded_bytes();
        if bytes > limits::MAX_SWEEP_BYTES {
            return Err(SpecError::TooLarge {
                trials: count,
                bytes,
                limit: limits::MAX_SWEEP_BYTES,
            });
        }
        let count = count as usize;
        let mut trials = Vec::with_capacity(count);
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(count);
        let mut choice = vec![0usize; self.axes.len()];
        let mut index = 0;
        loop {
            let mut point = self.base.clone();
            for (axis, &c) in self.axes.iter().zip(&choice) {
                axis.apply(&mut point, c)?;
            }
            for &seed in &self.seeds {
                let config = TrialConfig {
                    seed,
                    ..point.clone()
                };
                config
                    .validate()
                    .map_err(|e| self.locate(index, &choice, e))?;
                let toml = config.to_toml_string();
                let key = trial_key(&toml);
                if let Some(&first) = seen.get(&key) {
                    return Err(SpecError::DuplicateTrial {
                        first,
                        second: index,
                        key,
                    });
                }
                seen.insert(key.clone(), index);
                trials.push(SweepTrial {
                    index,
                    config,
                    toml,
                    key,
                    choice: choice.clone(),
                });
                index += 1;
            }
            // The odometer: the last axis turns fastest.
            let mut axis = self.axes.len();
            loop {
                if axis == 0 {
                    return Ok(trials);
                }
                axis -= 1;
                choice[axis] += 1;
                if choice[axis] < self.axes[axis].labels.len() {
                    break;
                }
                choice[axis] = 0;
            }
        }
    }

    /// Names the trial and its grid values in front of a combination's error.
    fn locate(&self, index: usize, choice: &[usize], e: ConfigError) -> ConfigError {
        if self.axes.is_empty() {
            return e;
        }
        let values: Vec<String> = self
            .axes
            .iter()
            .zip(choice)
            .map(|(axis, &c)| join_index(&join_key("grid", &axis.key), c))
            .collect();
        ConfigError::new(
            format!("trial {index} ({})", values.join(", ")),
            e.to_string(),
        )
    }
}

fn parse_seeds(value: &Value) -> Result<Vec<u64>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| type_error("seeds", "an array of seeds", value))?;
    if items.is_empty() {
        return Err(ConfigError::new(
            "seeds",
            "empty list; give at least one seed",
        ));
    }
    limit!(MAX_SEEDS, "seeds").check("seeds", items.len() as u64)?;
    let mut seeds: Vec<u64> = Vec::with_capacity(items.len());
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = join_index("seeds", i);
        let seed = parse_seed(item, &path)?;
        if let Some(&j) = seen.get(&seed) {
            return Err(ConfigError::new(
                path,
                format!("the same seed as {}", join_index("seeds", j)),
            ));
        }
        seen.insert(seed, i);
        if i64::try_from(seed).is_err() {
            return Err(ConfigError::new(path, "must fit in a TOML integer"));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    const DESIGN: &str = r#"
name     = "cifar10-activations"
dataset  = "cifar10:/data/cifar-10-batches-bin"
val_fraction = 0.1
epochs   = 40
batch_size = 128
seeds    = [0, 1, 2]
hidden   = [512, 256, 128]
optimizer = { kind = "sgd", lr = 0.01, momentum = 0.9 }

[grid]
activation     = ["sigmoid", "tanh", "relu", "leaky_relu"]
init           = ["default", "xavier_uniform", "he_normal"]
batchnorm      = [false, true]
regularization = ["none", "l1:1e-5", "l2:1e-4", "dropout:0.2"]

[gradcheck]
layer = "linear2"
"#;

    fn err(text: &str) -> String {
        let e = SweepSpec::from_toml_str(text)
            .and_then(|s| s.expand(DEFAULT_MAX_TRIALS))
            .expect_err("should be refused");
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line:?}");
        line
    }

    const BASE: &str = "dataset = \"synthetic:glyphs\"\n";

    #[test]
    fn design_example_expands_in_order() {
        let spec = SweepSpec::from_toml_str(DESIGN).unwrap();
        assert_eq!(spec.trial_count(), 4 * 3 * 2 * 4 * 3);
        let axes: Vec<&str> = spec.axes.iter().map(|a| a.key.as_str()).collect();
        // TRIAL_KEYS order, not the file's.
        assert_eq!(axes, ["activation", "init", "batchnorm", "regularization"]);
        assert_eq!(
            spec.axes[3].labels,
            ["none", "l1:1e-5", "l2:0.0001", "dropout:0.2"]
        );
        let trials = spec.expand(DEFAULT_MAX_TRIALS).unwrap();
        assert_eq!(trials.len(), 288);
        for (i, t) in trials.iter().enumerate() {
            assert_eq!(t.index, i);
            assert_eq!(t.config.name, "cifar10-activations");
            assert_eq!(t.config.epochs, 40);
            assert_eq!(t.config.hidden, [512, 256, 128]);
            assert_eq!(t.key, trial_key(&t.toml));
            assert_eq!(TrialConfig::from_toml_str(&t.toml).unwrap(), t.config);
        }
        // Seeds fastest, then the last axis.
        let first: Vec<u64> = trials[..4].iter().map(|t| t.config.seed).collect();
        assert_eq!(first, [0, 1, 2, 0]);
        assert_eq!(trials[0].choice, [0, 0, 0, 0]);
        assert_eq!(trials[3].choice, [0, 0, 0, 1]);
        assert_eq!(trials[3].config.regularization.l1, Some(1e-5));
        assert_eq!(trials[12].choice, [0, 0, 1, 0]);
        assert!(trials[12].config.batchnorm);
        assert_eq!(trials[287].choice, [3, 2, 1, 3]);
        assert_eq!(trials[287].config.activation, Activation::LeakyRelu);
        assert_eq!(trials[287].config.seed, 2);
        let last = &trials[287].config;
        assert_eq!(last.gradcheck.layer.to_string(), "linear2");
        assert_eq!(last.init.name(), "he_normal");
    }

    #[test]
    fn keys_are_deterministic_and_distinct() {
        let a = SweepSpec::from_toml_str(DESIGN)
            .unwrap()
            .expand(1000)
            .unwrap();
        // The same spec with its lines in another order gives the same trials and keys.
        let reordered = DESIGN.replace(
            "activation     = [\"sigmoid\", \"tanh\", \"relu\", \"leaky_relu\"]\n",
            "",
        ) + "";
        let reordered = reordered.replace(
            "[grid]\n",
            "[grid]\nactivation = [\"sigmoid\", \"tanh\", \"relu\", \"leaky_relu\"]\n",
        );
        let b = SweepSpec::from_toml_str(&reordered)
            .unwrap()
            .expand(1000)
            .unwrap();
        assert_eq!(a, b);
        let keys: std::collections::HashSet<&str> = a.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys.len(), a.len());
        assert!(a.iter().all(|t| t.key.len() == 64));
        // The key covers the dataset and the seed.
        let other = DESIGN.replace("cifar10:/data/cifar-10-batches-bin", "cifar10:/d");
        let c = SweepSpec::from_toml_str(&other)
            .unwrap()
            .expand(1000)
            .unwrap();
        assert!(a.iter().zip(&c).all(|(x, y)| x.key != y.key));
    }

    #[test]
    fn no_grid_is_one_trial_per_seed() {
        let spec = SweepSpec::from_toml_str(BASE).unwrap();
        let trials = spec.expand(10).unwrap();
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].config.name, "sweep");
        assert_eq!(trials[0].config.seed, 0);
        assert!(trials[0].choice.is_empty());
        let seeded = SweepSpec::from_toml_str(&format!("{BASE}seeds = [5, 3]"))
            .unwrap()
            .expand(10)
            .unwrap();
        let seeds: Vec<u64> = seeded.iter().map(|t| t.config.seed).collect();
        assert_eq!(seeds, [5, 3]);
    }

    #[test]
    fn lists_of_lists_and_tables() {
        let spec = SweepSpec::from_toml_str(&format!(
            "{BASE}[grid]\nhidden = [[], [64, 32]]\noptimizer = [{{ kind = \"sgd\" }}, {{ kind = \"adam\", lr = 3e-4 }}]\n"
        ))
        .unwrap();
        assert_eq!(spec.axes[0].labels, ["[]", "[64, 32]"]);
        let trials = spec.expand(10).unwrap();
        assert_eq!(trials.len(), 4);
        assert!(trials[0].config.hidden.is_empty());
        assert_eq!(trials[3].config.optimizer.kind(), "adam");
        assert_eq!(trials[3].config.optimizer.lr(), 3e-4);
    }

    #[test]
    fn errors_carry_paths() {
        assert_eq!(
            err(&format!(
                "{BASE}[grid]\nactivation = [\"relu\", \"tanh\", \"relux\"]"
            )),
            "grid.activation[2]: unknown activation \"relux\"; expected one of sigmoid, tanh, relu, leaky_relu, elu"
        );
        assert_eq!(
            err(&format!("{BASE}[grid]\nhidden = [[8], [8, 0]]")),
            "grid.hidden[1][1]: must be a positive integer, got 0"
        );
        assert_eq!(
            err(&format!("{BASE}[grid]\nbatchnorm = []")),
            "grid.batchnorm: empty list; give at least one value"
        );
        assert_eq!(
            err(&format!("{BASE}[grid]\nbatchnorm = true")),
            "grid.batchnorm: expected an array of values, got a boolean"
        );
        assert_eq!(
            err(&format!(
                "{BASE}batchnorm = true\n[grid]\nbatchnorm = [true]"
            )),
            "grid.batchnorm: also given at the top level; give it in one place"
        );
        assert!(
            err(&format!("{BASE}[grid]\ncolour = [1]"))
                .starts_with("grid.colour: unknown key; expected one of dataset, val_fraction,")
        );
        assert!(err(&format!("{BASE}[grid]\nseed = [1]")).starts_with("grid.seed: unknown key"));
        assert!(
            err(&format!("{BASE}colour = 1"))
                .starts_with("colour: unknown key; expected one of name, dataset,")
        );
        assert_eq!(
            err(&format!("{BASE}seed = 1")),
            "seed: a sweep takes a list of seeds: write seeds = [..]"
        );
        assert_eq!(
            err(&format!("{BASE}seeds = []")),
            "seeds: empty list; give at least one seed"
        );
        assert_eq!(
            err(&format!("{BASE}seeds = [1, -2]")),
            "seeds[1]: must be a non-negative integer, got -2"
        );
        assert_eq!(err("epochs = 3"), "dataset: missing required key");
        assert_eq!(
            err(&format!("{BASE}epochs = 0")),
            "epochs: must be a positive integer, got 0"
        );
        assert_eq!(
            err(&format!("{BASE}grid = 1")),
            "grid: expected a table, got an integer"
        );
        // A combination that is invalid names the trial and its grid values.
        assert_eq!(
            err(&format!(
                "{BASE}[gradcheck]\nlayer = \"linear3\"\n[grid]\nhidden = [[8, 8], [8]]"
            )),
            "trial 1 (grid.hidden[1]): gradcheck.layer: no layer \"linear3\"; this net has linear1 … linear2"
        );
        // A dataset may be an axis.
        let spec = SweepSpec::from_toml_str(
            "[grid]\ndataset = [\"synthetic:glyphs\", \"synthetic:glyphs-small\"]",
        )
        .unwrap();
        assert_eq!(spec.trial_count(), 2);
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            err(&format!(
                "{BASE}[grid]\nactivation = [\"relu\", \"tanh\", \"relu\"]"
            )),
            "grid.activation[2]: the same value as grid.activation[0] (relu)"
        );
        assert_eq!(
            err(&format!(
                "{BASE}[grid]\nregularization = [\"l2:1e-4\", \"l2:0.0001\"]"
            )),
            "grid.regularization[1]: the same value as grid.regularization[0] (l2:0.0001)"
        );
        assert!(
            err(&format!(
                "{BASE}[grid]\noptimizer = [{{ kind = \"sgd\" }}, {{ lr = 0.01 }}]"
            ))
            .starts_with("grid.optimizer[1]: the same value as grid.optimizer[0]")
        );
        assert_eq!(
            err(&format!("{BASE}seeds = [1, 2, 1]")),
            "seeds[2]: the same seed as seeds[0]"
        );
    }

    #[test]
    fn expanded_bytes_are_the_trials_canonical_toml() {
        for text in [
            DESIGN.to_owned(),
            format!("{BASE}seeds = [5, 3, 100000, 7]"),
            "name = \"é\\\"\"\n[grid]\nhidden = [[], [64, 32], [1000]]\noptimizer = [{ kind = \"sgd\" }, { kind = \"adam\", lr = 3e-4 }]\ndataset = [\"synthetic:glyphs\", \"gurmukhi:/a/b\"]\n[gradcheck]\nsamples = 1000\n"
                .to_owned(),
            BASE.to_owned(),
        ] {
            let spec = SweepSpec::from_toml_str(&text).unwrap();
            let trials = spec.expand(DEFAULT_MAX_TRIALS).unwrap();
            let sum: usize = trials.iter().map(|t| t.toml.len()).sum();
            assert_eq!(spec.expanded_bytes(), sum as u64, "{text}");
        }
    }

    #[test]
    fn a_grid_of_huge_trials_is_refused_before_expanding() {
        // 100 seeds × 1000 batch sizes of trials with a 4 KB dataset path and 1024
        // layers: about 780 MB of canonical TOML from an 11 KB spec.
        let seeds: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let sizes: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
        let text = format!(
            "dataset = \"gurmukhi:{}\"\nhidden = [{}]\nseeds = [{}]\n[grid]\nbatch_size = [{}]\n",
            "d".repeat(4087),
            vec!["1"; 1024].join(","),
            seeds.join(","),
            sizes.join(",")
        );
        let spec = SweepSpec::from_toml_str(&text).unwrap();
        assert_eq!(spec.trial_count(), 100_000);
        let e = spec.expand(DEFAULT_MAX_TRIALS).unwrap_err();
        assert!(
            matches!(
                e,
                SpecError::TooLarge {
                    trials: 100_000,
                    ..
                }
            ),
            "{e}"
        );
        let line = e.to_string();
        assert!(
            line.starts_with("the grid's 100000 trials come to ")
                && line.ends_with(
                    " bytes of canonical TOML; the limit is 134217728 (limits::MAX_SWEEP_BYTES)"
                ),
            "{line}"
        );
        // A tenth of it is within the limit and expands.
        let small = text.replace(
            &format!("[{}]\n", sizes.join(",")),
            &format!("[{}]\n", sizes[..10].join(",")),
        );
        let spec = SweepSpec::from_toml_str(&small).unwrap();
        assert_eq!(spec.expand(DEFAULT_MAX_TRIALS).unwrap().len(), 1000);
    }

    #[test]
    fn limit_is_enforced_with_the_count() {
        let text = format!(
            "{BASE}seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n[grid]\nactivation = [\"sigmoid\", \"tanh\", \"relu\", \"leaky_relu\", \"elu\"]\nbatch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nepochs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\neval_batch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nval_fraction = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]\n"
        );
        let spec = SweepSpec::from_toml_str(&text).unwrap();
        assert_eq!(spec.trial_count(), 500_000);
        assert_eq!(
            spec.expand(DEFAULT_MAX_TRIALS).unwrap_err(),
            SpecError::TooManyTrials {
                count: 500_000,
                limit: 100_000
            }
        );
        assert_eq!(
            spec.expand(DEFAULT_MAX_TRIALS).unwrap_err().to_string(),
            "the grid expands into 500000 trials, more than the limit of 100000"
        );
        let small = SweepSpec::from_toml_str(&format!(
            "{BASE}seeds = [0, 1]\n[grid]\nbatchnorm = [false, true]"
        ))
        .unwrap();
        assert_eq!(small.expand(4).unwrap().len(), 4);
        assert!(matches!(
            small.expand(3),
            Err(SpecError::TooManyTrials { count: 4, limit: 3 })
        ));
    }
}
