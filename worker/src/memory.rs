//! How much memory a trial needs, and whether the worker has it.
//!
//! The estimate follows the buffers the trainer really allocates (see [`crate::model`],
//! [`crate::train`] and [`crate::check`]), buffer by buffer, so a trial that cannot fit
//! is refused before any of them is allocated, with one line naming the estimate, its
//! largest parts and what the worker has — instead of the process aborting on a failed
//! allocation. `worker/tests/memory.rs` compares it with what the model and a whole
//! trial allocate.
//!
//! Training runs in `f32` (4 bytes a value, `u32` indices). On the CPU every buffer is
//! host memory and the dataset is borrowed, not copied (it is already loaded and counted
//! in what the machine has left); on a GPU the model, the training buffers and the three
//! splits live on the device, while the initial weights and the gradient check's `f64`
//! copy live on the host, and both sides are checked.

use crate::check::GRADCHECK_ROWS;
use crate::config::{GradCheckLayer, TrialConfig};
use crate::data::Dataset;
use crate::report::{EpochReport, LayerDiagnostics};
use crate::train::PROBE_ROWS;

/// Bytes of one training value (`f32`).
const F32: u128 = 4;
/// Bytes of one gradient-check value (`f64`).
const F64: u128 = 8;
/// Bytes of one index (`u32`).
const IDX: u128 = 4;

/// Memory kept aside for what the estimate does not itemise: the matrix-multiply
/// kernels' packing buffers, thread stacks, the CUDA context's scratch and cuBLAS's
/// workspace.
pub const RESERVE_BYTES: u64 = 64 << 20;

/// The rows the model's buffers are sized for: the training batch, the effective
/// evaluation batch (`eval_batch_size`, at most the largest evaluation split) and the
/// dead-unit probe batch.
pub fn max_rows(config: &TrialConfig, n_train: usize, n_val: usize, n_test: usize) -> usize {
    config
        .batch_size
        .max(eval_rows(config, n_val, n_test))
        .max(probe_rows(n_train, n_val))
        .max(1)
}

/// The effective evaluation batch: `eval_batch_size`, at most the largest of the
/// validation and test splits (a batch is never larger than the split it batches).
pub fn eval_rows(config: &TrialConfig, n_val: usize, n_test: usize) -> usize {
    config.eval_batch_size.min(n_val.max(n_test))
}

/// Rows of the probe batch that measures dead ReLU units (the first validation
/// samples, or training samples when there is no validation split).
pub fn probe_rows(n_train: usize, n_val: usize) -> usize {
    PROBE_ROWS.min(if n_val > 0 { n_val } else { n_train })
}

/// What a trial's shapes are, as far as memory goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shapes {
    /// Input features per image.
    pub inputs: usize,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Output classes.
    pub classes: usize,
    /// Batch norm after each hidden Linear.
    pub batchnorm: bool,
    /// Dropout after each hidden activation.
    pub dropout: bool,
    /// Image channels.
    pub channels: usize,
    /// Images in each split (train, validation, test).
    pub splits: [usize; 3],
    /// Bytes of each split's images and labels (what a GPU holds).
    pub dataset_bytes: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// `eval_batch_size` as configured.
    pub eval_batch_size: usize,
    /// Epochs (their reports are kept until the end).
    pub epochs: u32,
    /// Whether the gradient check runs (it copies the whole model into `f64`).
    pub gradcheck: bool,
    /// Optimiser-state buffers per parameter (SGD 1, Adam 2).
    pub optimizer_buffers: usize,
}

impl Shapes {
    /// The shapes of `config` on `data`.
    pub fn of(config: &TrialConfig, data: &Dataset) -> Shapes {
        let bytes = |s: &crate::data::Split| (s.images.len() + s.labels.len()) as u64;
        Shapes {
            inputs: data.shape.features(),
            hidden: config.hidden.clone(),
            classes: data.classes,
            batchnorm: config.batchnorm,
            dropout: config.regularization.dropout.is_some(),
            channels: data.shape.channels,
            splits: [data.train.len(), data.val.len(), data.test.len()],
            dataset_bytes: bytes(&data.train) + bytes(&data.val) + bytes(&data.test),
            batch_size: config.batch_size,
            eval_batch_size: config.eval_batch_size,
            epochs: config.epochs,
            gradcheck: config.gradcheck.layer != GradCheckLayer::None,
            optimizer_buffers: crate::train::optimizer_buffers(&config.optimizer),
        }
    }

    /// `(inputs, outputs)` of each Linear layer.
    fn linear(&self) -> Vec<(u128, u128)> {
        let mut dims = vec![self.inputs as u128];
        dims.extend(self.hidden.iter().map(|&h| h as u128));
        dims.push(self.classes as u128);
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

/// Where a part of the estimate lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The trial's device (host memory when it trains on the CPU).
    Device,
    /// Host memory, whatever the device.
    Host,
}

/// One itemised part of an estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What it is, in words (`parameters`, `activations at batch 128`).
    pub name: String,
    /// Bytes (saturated at `u64::MAX`).
    pub bytes: u64,
    /// Where it lives.
    pub place: Place,
}

/// A trial's memory estimate, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The parts, in the order the trainer allocates them.
    pub parts: Vec<Part>,
    /// Host bytes while the initial weights are drawn (in `f64`, then converted to
    /// `f32`), before the model exists: the host's peak when that is larger than the
    /// sum of the host parts (a GPU trial without a gradient check).
    pub first_draw: u64,
}

fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

impl Estimate {
    /// The estimate for `shapes`, with every part of the model, the training buffers
    /// and the gradient check, plus [`RESERVE_BYTES`].
    pub fn new(shapes: &Shapes) -> Estimate {
        let [n_train, n_val, n_test] = shapes.splits;
        let probe = PROBE_ROWS.min(if n_val > 0 { n_val } else { n_train }) as u128;
        let eval = shapes.eval_batch_size.min(n_val.max(n_test)) as u128;
        let rows = (shapes.batch_size as u128).max(eval).max(probe).max(1);
        let layers = shapes.linear();
        let last = layers.len().saturating_sub(1);
        let (mut params, mut weights, mut max_weight) = (0u128, 0u128, 0u128);
        let (mut act, mut bn_stats, mut bn_rows, mut drop) = (0u128, 0u128, 0u128, 0u128);
        for (l, &(i, o)) in layers.iter().enumerate() {
            let w = i.saturating_mul(o);
            weights = weights.saturating_add(w);
            max_weight = max_weight.max(w.saturating_add(o));
            params = params.saturating_add(w).saturating_add(o);
            // `a` and `grad_out`, `rows × outputs` each.
            act = act.saturating_add(rows.saturating_mul(o).saturating_mul(2));
            if l < last {
                if shapes.batchnorm {
                    // γ and β are parameters; running mean, running variance and
                    // 1/σ are `outputs`; x̂, z and dz are `rows × outputs`.
                    params = params.saturating_add(2 * o);
                    bn_stats = bn_stats.saturating_add(3 * o);
                    bn_rows = bn_rows.saturating_add(rows.saturating_mul(o).saturating_mul(3));
                }
                if shapes.dropout {
                    // The mask and the dropped output.
                    drop = drop.saturating_add(rows.saturating_mul(o).saturating_mul(2));
                }
            }
        }
        let inputs = shapes.inputs as u128;
        let mut parts = Vec::new();
        let mut part = |name: String, bytes: u128, place: Place| {
            parts.push(Part {
                name,
                bytes: sat(bytes),
                place,
            })
        };
        part("parameters".into(), params * F32, Place::Device);
        part("gradients".into(), params * F32, Place::Device);
        // SGD's velocity, or Adam's two moments.
        part(
            "optimizer state".into(),
            params.saturating_mul(shapes.optimizer_buffers as u128 * F32),
            Place::Device,
        );
        part(
            format!("activations and their gradients at batch {rows}"),
            act.saturating_mul(F32),
            Place::Device,
        );
        if shapes.batchnorm {
            part(
                format!("batch norm buffers at batch {rows}"),
                bn_rows.saturating_add(bn_stats).saturating_mul(F32),
                Place::Device,
            );
        }
        if shapes.dropout {
            part(
                format!("dropout masks at batch {rows}"),
                drop.saturating_mul(F32),
                Place::Device,
            );
        }
        // The batch being trained or evaluated, its labels, the per-channel scale and
        // shift, the shuffled order of the training split and the evaluation order.
        let identity = (n_val.max(n_test) as u128).max(probe);
        part(
            format!("batch buffers at batch {rows}"),
            rows.saturating_mul(inputs)
                .saturating_mul(F32)
                .saturating_add(rows * IDX)
                .saturating_add(2 * shapes.channels as u128 * F32)
                .saturating_add((n_train as u128 + identity) * IDX)
                .saturating_add(2 * F32),
            Place::Device,
        );
        // Each layer's weights at the start of training and of the epoch, and its
        // gradient statistics.
        part(
            "weight-change diagnostics".into(),
            weights
                .saturating_mul(2 * F32)
                .saturating_add(layers.len() as u128 * 2 * F32),
            Place::Device,
        );
        // The initial weights stay on the host in f32 (drawn in f64 first, freed before
        // the model is built); the shuffle permutation and the evaluation order too.
        part(
            "initial weights and indices on the host".into(),
            (params - bn_param_count(shapes, &layers))
                .saturating_mul(F32)
                .saturating_add((n_train as u128 + identity) * IDX),
            Place::Host,
        );
        // Every epoch's report is kept until the trial ends.
        let report = std::mem::size_of::<EpochReport>() as u128
            + layers.len() as u128
                * (std::mem::size_of::<LayerDiagnostics>() as u128 + "linear0000".len() as u128);
        part(
            format!("{} epoch reports", shapes.epochs),
            (shapes.epochs as u128).saturating_mul(report),
            Place::Host,
        );
        if shapes.gradcheck {
            // The model again in f64 with buffers for GRADCHECK_ROWS rows (parameters
            // and gradients, no optimizer state), its Linear weights once more while it
            // is built, and one layer's analytic and device gradients side by side.
            let check_rows = GRADCHECK_ROWS as u128;
            let f64_act = act / rows.max(1) * check_rows
                + bn_rows / rows.max(1) * check_rows
                + bn_stats
                + drop / rows.max(1) * check_rows;
            part(
                "gradient check's f64 copy of the model".into(),
                params
                    .saturating_mul(2 * F64)
                    .saturating_add(params.saturating_mul(F64))
                    .saturating_add(f64_act.saturating_mul(F64))
                    .saturating_add(max_weight.saturating_mul(F64 + F32))
                    .saturating_add(check_rows * inputs * (F64 + F32)),
                Place::Host,
            );
        }
        part(
            "the dataset on the device".into(),
            u128::from(shapes.dataset_bytes),
            Place::Device,
        );
        part(
            "kernels' scratch and runtime".into(),
            u128::from(RESERVE_BYTES),
            Place::Device,
        );
        let linear = params - bn_param_count(shapes, &layers);
        Estimate {
            parts,
            first_draw: sat(linear.saturating_mul(F64 + F32)),
        }
    }

    /// Bytes of the parts at `place`; on the CPU (`cpu`) the dataset is not counted
    /// (it is already loaded, and borrowed) and both places are the host.
    pub fn bytes(&self, place: Place, cpu: bool) -> u64 {
        let sum = self
            .parts
            .iter()
            .filter(|p| {
                if cpu {
                    !p.is_dataset()
                } else {
                    p.place == place
                }
            })
            .fold(0u64, |sum, p| sum.saturating_add(p.bytes));
        if cpu || place == Place::Host {
            sum.max(self.first_draw)
        } else {
            sum
        }
    }

    /// The model and training bytes alone: every part but the dataset and the reserve
    /// (what the tests compare with real allocations).
    pub fn itemised(&self, place: Place) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.place == place && !p.is_dataset() && !p.is_reserve())
            .fold(0u64, |sum, p| sum.saturating_add(p.bytes))
    }

    /// The first part whose name starts with `prefix`, if any.
    pub fn part(&self, prefix: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name.starts_with(prefix))
    }

    /// The largest parts counted at `place`, largest first, as `name 1.2 GB`.
    fn main_parts(&self, place: Place, cpu: bool) -> String {
        let mut parts: Vec<&Part> = self
            .parts
            .iter()
            .filter(|p| {
                if cpu {
                    !p.is_dataset()
                } else {
                    p.place == place
                }
            })
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
        parts
            .iter()
            .take(3)
            .map(|p| format!("{} {}", p.name, human(p.bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Part {
    fn is_dataset(&self) -> bool {
        self.name == "the dataset on the device"
    }
    fn is_reserve(&self) -> bool {
        self.name == "kernels' scratch and runtime"
    }
}

/// Batch-norm γ and β are created on the device without a host copy.
fn bn_param_count(shapes: &Shapes, layers: &[(u128, u128)]) -> u128 {
    if !shapes.batchnorm {
        return 0;
    }
    layers
        .iter()
        .take(layers.len().saturating_sub(1))
        .map(|&(_, o)| 2 * o)
        .sum()
}

/// `bytes` for a person: `512 B`, `3.1 MB`, `8.2 TB` (powers of 1000).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// What a machine has for a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// Host bytes available (`MemAvailable`), when known.
    pub host: Option<u64>,
    /// Device bytes free (GPU only), when known, and what was measured.
    pub device: Option<(u64, &'static str)>,
    /// The worker's `--max-memory`, when given (`host` is at most this).
    pub host_cap: Option<u64>,
}

/// `MemAvailable` of `/proc/meminfo`, in bytes; `None` where there is no such file.
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    mem_available(&text)
}

/// `MemAvailable` in a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

/// Parses `--max-memory`: bytes, or a number with a binary suffix `K`, `M`, `G`, `T`.
pub fn parse_max_memory(text: &str) -> Result<u64, String> {
    parse_bytes(text).ok_or_else(|| {
        format!("expected bytes, or a number with K, M, G or T (e.g. 12G); got {text:?}")
    })
}

/// `4096`, `512K`, `12G`, `1.5T` → bytes (binary multiples); `None` when malformed or 0.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let scale: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let x: f64 = number.trim().parse().ok()?;
    let bytes = x * scale as f64;
    (x.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// What `device` has: the host's `MemAvailable` (at most `max_memory`, the worker's
/// `--max-memory`, when given), and on a GPU its free memory.
pub fn available(device: &crate::device::Device, max_memory: Option<u64>) -> Available {
    let gpu = match device {
        crate::device::Device::Cpu(_) => None,
        crate::device::Device::Cuda(gpu) => gpu
            .memory()
            .ok()
            .map(|(free, _total)| (free as u64, "free on the GPU")),
    };
    let host = match (host_available(), max_memory) {
        (Some(h), Some(cap)) => Some(h.min(cap)),
        (h, cap) => h.or(cap),
    };
    Available {
        host,
        device: gpu,
        host_cap: max_memory,
    }
}

/// A trial that needs more memory than the worker has: one line naming the estimate,
/// its largest parts and what is available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the trial needs about {} of {where_} memory ({}) but {} {}; make hidden, batch_size or eval_batch_size smaller",
    human(*.needed), .parts, human(*.available), .what
)]
pub struct MemoryError {
    /// Bytes the trial needs there.
    pub needed: u64,
    /// Its largest parts, in words.
    pub parts: String,
    /// Bytes available there.
    pub available: u64,
    /// `host` or `GPU`.
    pub where_: &'static str,
    /// What `available` is (`are available (MemAvailable)`).
    pub what: String,
}

/// Checks `estimate` against `available`: on the CPU every part against the host's
/// available memory; on a GPU the device parts against its free memory and the host
/// parts against the host's. Unknown amounts are not checked.
pub fn check(estimate: &Estimate, cpu: bool, available: &Available) -> Result<(), MemoryError> {
    // One place's need against what it has (unknown: not checked).
    let fits = |place: Place, have: Option<u64>, where_: &'static str, what: String| {
        let Some(have) = have else { return Ok(()) };
        let needed = estimate.bytes(place, cpu);
        if needed <= have {
            return Ok(());
        }
        Err(MemoryError {
            needed,
            parts: estimate.main_parts(place, cpu),
            available: have,
            where_,
            what,
        })
    };
    if !cpu {
        let (free, what) = available.device.unzip();
        fits(
            Place::Device,
            free,
            "GPU",
            format!("are {}", what.unwrap_or_default()),
        )?;
    }
    fits(Place::Host, available.host, "host", host_what(available))
}

/// How the host's available memory was measured, for messages.
fn host_what(available: &Available) -> String {
    match available.host_cap {
        Some(cap) => format!(
            "are available (MemAvailable, at most --max-memory {})",
            human(cap)
        ),
        None => "are available (MemAvailable)".into(),
    }
}

/// Estimates `config` on `data` and checks it against what `device` has.
pub fn check_trial(
    config: &TrialConfig,
    data: &Dataset,
    device: &crate::device::Device,
    max_memory: Option<u64>,
) -> Result<Estimate, MemoryError> {
    let estimate = Estimate::new(&Shapes::of(config, data));
    let cpu = matches!(device, crate::device::Device::Cpu(_));
    check(&estimate, cpu, &available(device, max_memory))?;
    Ok(estimate)
}

/// A packed group's estimate ([`crate::packed`]): the estimate of one member as the
/// packed model holds it — batch-norm and dropout buffers when any member has them —
/// for every member (parameters, gradients, optimiser state, activations, batch buffers,
/// diagnostics, initial weights and reports on the host), plus the packed ops'
/// per-trial tables; the dataset, the reserve and the gradient check once (each member's
/// runs alone after training, once the group's buffers are freed, so on the device it
/// needs no more than one member's share of them).
pub fn group_estimate(configs: &[&TrialConfig], data: &Dataset) -> Estimate {
    let groups = configs.len().max(1) as u128;
    let mut shapes = Shapes::of(configs[0], data);
    shapes.batchnorm = configs.iter().any(|c| c.batchnorm);
    shapes.dropout = configs.iter().any(|c| c.regularization.dropout.is_some());
    shapes.gradcheck = configs
        .iter()
        .any(|c| c.gradcheck.layer != GradCheckLayer::None);
    let one = Estimate::new(&shapes);
    let mut parts: Vec<Part> = one
        .parts
        .into_iter()
        .map(|p| {
            if p.is_dataset() || p.is_reserve() || p.name.starts_with("gradient check") {
                p
            } else {
                Part {
                    name: format!("{} × {}", groups, p.name),
                    bytes: sat(u128::from(p.bytes).saturating_mul(groups)),
                    place: p.place,
                }
            }
        })
        .collect();
    let tables = groups.saturating_mul(gradsweep_kernels::cuda::SCRATCH_BYTES_PER_TRIAL as u128);
    let at = parts
        .iter()
        .position(|p| p.is_dataset())
        .unwrap_or(parts.len());
    parts.insert(
        at,
        Part {
            name: "packed ops' per-trial tables".into(),
            bytes: sat(tables),
            place: Place::Device,
        },
    );
    Estimate {
        parts,
        first_draw: sat(u128::from(one.first_draw).saturating_mul(groups)),
    }
}

/// Estimates a packed group of `configs` on `data` and checks it against what `device`
/// has, as [`check_trial`] does for one trial.
pub fn check_group(
    configs: &[&TrialConfig],
    data: &Dataset,
    device: &crate::device::Device,
    max_memory: Option<u64>,
) -> Result<Estimate, MemoryError> {
    let estimate = group_estimate(configs, data);
    let cpu = matches!(device, crate::device::Device::Cpu(_));
    check(&estimate, cpu, &available(device, max_memory))?;
    Ok(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("512K"), Some(512 << 10));
        assert_eq!(parse_bytes("12g"), Some(12 << 30));
        assert_eq!(parse_bytes("1.5T"), Some(3 << 39));
        for bad in ["", "0", "-1G", "12Q", "G", "nan", "1e400"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }

    fn shapes(hidden: Vec<usize>) -> Shapes {
        Shapes {
            inputs: 1024,
            hidden,
            classes: 10,
            batchnorm: false,
            dropout: false,
            channels: 1,
            splits: [900, 100, 500],
            dataset_bytes: 1500 * 1025,
            batch_size: 128,
            eval_batch_size: 1000,
            epochs: 10,
            gradcheck: true,
            optimizer_buffers: 1,
        }
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       16316412 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(mem_available(text), Some(12_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_billion_units_is_refused_naming_the_parts_and_what_is_available() {
        let e = Estimate::new(&shapes(vec![1_000_000_000]));
        let available = Available {
            host: Some(16_000_000_000),
            device: None,
            host_cap: None,
        };
        let err = check(&e, true, &available).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.starts_with("the trial needs about "), "{err}");
        assert!(err.contains("about 66.1 TB of host memory"), "{err}");
        assert!(
            err.contains(
                "(gradient check's f64 copy of the model 37.3 TB, weight-change diagnostics 8.3 TB,"
            ),
            "{err}"
        );
        assert!(
            err.contains("but 16.0 GB are available (MemAvailable)"),
            "{err}"
        );
        // The same trial fits nowhere; a small one fits.
        let small = Estimate::new(&shapes(vec![256, 128]));
        check(&small, true, &available).unwrap();
        // Under --max-memory the message says what bounded it.
        let capped = Available {
            host: Some(1 << 20),
            device: None,
            host_cap: Some(1 << 20),
        };
        let err = check(&small, true, &capped).unwrap_err().to_string();
        assert!(
            err.contains("but 1.0 MB are available (MemAvailable, at most --max-memory 1.0 MB)"),
            "{err}"
        );
    }

    #[test]
    fn absurd_shapes_saturate_instead_of_overflowing() {
        let e = Estimate::new(&shapes(vec![usize::MAX; 1000]));
        assert_eq!(e.bytes(Place::Host, true), u64::MAX);
    }

    #[test]
    fn the_eval_batch_is_at_most_the_largest_evaluation_split() {
        let mut s = shapes(vec![64]);
        s.eval_batch_size = 1_000_000_000;
        let e = Estimate::new(&s);
        assert!(
            e.part("activations")
                .unwrap()
                .name
                .ends_with("at batch 500")
        );
    }

    #[test]
    fn a_gpu_checks_device_and_host_apart() {
        let e = Estimate::new(&shapes(vec![4096, 4096]));
        let device_bytes = e.bytes(Place::Device, false);
        let tight = Available {
            host: Some(u64::MAX),
            device: Some((device_bytes - 1, "free on the GPU")),
            host_cap: None,
        };
        let err = check(&e, false, &tight).unwrap_err().to_string();
        assert!(err.contains("of GPU memory"), "{err}");
        assert!(err.contains("are free on the GPU"), "{err}");
        let roomy = Available {
            host: Some(u64::MAX),
            device: Some((device_bytes, "free on the GPU")),
            host_cap: None,
        };
        check(&e, false, &roomy).unwrap();
    }
}
