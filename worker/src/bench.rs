//! Training-throughput benchmark on CIFAR-shaped synthetic data, the same shapes as the
//! PyTorch anchor script (`pytorch_mlp_bench.py`), so the two can run side by side.

use crate::config::Activation;
use crate::config::{GradCheckConfig, GradCheckLayer, Optimizer, Regularization, TrialConfig};
use crate::data::{Dataset, ImageShape, Split};
use crate::train::{self, Event};
use gradsweep_kernels::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One benchmarked configuration.
#[derive(Debug, Clone)]
pub struct BenchCase {
    /// Short name (`relu`, `bn-dropout`, `deep-sigmoid`).
    pub name: &'static str,
    /// The PyTorch script's arguments for the same model.
    pub pytorch_args: &'static str,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Activation.
    pub activation: Activation,
    /// Batch norm.
    pub batchnorm: bool,
    /// Dropout probability.
    pub dropout: Option<f64>,
}

/// The three configurations: 3072-512-256-10 ReLU; the same with batch norm
/// and dropout 0.2; the deep 3072-(256×5)-10 sigmoid net.
pub fn cases() -> Vec<BenchCase> {
    vec![
        BenchCase {
            name: "relu",
            pytorch_args: "--hidden 512,256 --act relu",
            hidden: vec![512, 256],
            activation: Activation::Relu,
            batchnorm: false,
            dropout: None,
        },
        BenchCase {
            name: "bn-dropout",
            pytorch_args: "--hidden 512,256 --act relu --bn --dropout 0.2",
            hidden: vec![512, 256],
            activation: Activation::Relu,
            batchnorm: true,
            dropout: Some(0.2),
        },
        BenchCase {
            name: "deep-sigmoid",
            pytorch_args: "--hidden 256,256,256,256,256 --act sigmoid",
            hidden: vec![256; 5],
            activation: Activation::Sigmoid,
            batchnorm: false,
            dropout: None,
        },
    ]
}

/// `n` random CIFAR-shaped images (3×32×32 `u8`, 10 classes) to train on, and small
/// validation and test splits so that the per-epoch evaluation stays cheap.
pub fn cifar_shaped(n: usize, seed: u64) -> Dataset {
    let shape = ImageShape {
        channels: 3,
        height: 32,
        width: 32,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = |n: usize| {
        let mut images = vec![0u8; n * shape.features()];
        rng.fill(images.as_mut_slice());
        Split {
            images,
            labels: (0..n).map(|_| rng.random_range(0..10u8)).collect(),
        }
    };
    let train = split(n);
    let val = split(500);
    let test = split(500);
    Dataset::new(
        &format!("bench:cifar-shaped-{n}"),
        shape,
        10,
        train,
        val,
        test,
    )
}

/// The trial config of a case: batch 128, SGD lr 0.01 momentum 0.9 (the anchor's).
pub fn config(case: &BenchCase, epochs: u32, batch_size: usize) -> TrialConfig {
    TrialConfig {
        name: format!("bench-{}", case.name),
        dataset: "bench:cifar-shaped".into(),
        epochs,
        batch_size,
        hidden: case.hidden.clone(),
        activation: case.activation,
        batchnorm: case.batchnorm,
        regularization: Regularization {
            dropout: case.dropout,
            ..Regularization::default()
        },
        optimizer: Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        gradcheck: GradCheckConfig {
            layer: GradCheckLayer::None,
            samples: 1,
        },
        ..TrialConfig::default()
    }
}

/// The result of one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// The case's name.
    pub case: String,
    /// Training samples per second of each epoch (training batches only).
    pub samples_per_s: Vec<f64>,
    /// Seconds of each whole epoch, evaluation and diagnostics included.
    pub epoch_seconds: Vec<f64>,
}

impl BenchResult {
    /// The best epoch's throughput (the anchor script reports its fastest epoch too).
    pub fn best(&self) -> f64 {
        self.samples_per_s.iter().copied().fold(0.0, f64::max)
    }
}

/// Trains `case` for `epochs` on `data` and measures it.
pub fn run<B: Backend>(
    backend: &B,
    case: &BenchCase,
    data: &Dataset,
    epochs: u32,
    batch_size: usize,
    on_event: &mut dyn FnMut(Event<'_>),
) -> gradsweep_kernels::Result<BenchResult> {
    let config = config(case, epochs, batch_size);
    let trained = train::train(backend, &config, data, on_event)?;
    Ok(BenchResult {
        case: case.name.to_string(),
        samples_per_s: trained
            .epochs
            .iter()
            .map(|e| data.train.len() as f64 / e.train_seconds)
            .collect(),
        epoch_seconds: trained.epochs.iter().map(|e| e.seconds).collect(),
    })
}

/// The trials of a packed benchmark group of `groups`: the case with seeds 0, 1, ….
pub fn group_configs(
    case: &BenchCase,
    epochs: u32,
    batch_size: usize,
    groups: usize,
) -> Vec<TrialConfig> {
    (0..groups)
        .map(|g| TrialConfig {
            seed: g as u64,
            ..config(case, epochs, batch_size)
        })
        .collect()
}

/// The result of a group of trials trained together or side by side.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupResult {
    /// How the trials ran: `packed`, or `alone on S slots`.
    pub how: String,
    /// Trials.
    pub trials: usize,
    /// Aggregate training samples per second (all trials) of each epoch, or of the
    /// whole run for trials trained alone.
    pub samples_per_s: Vec<f64>,
}

impl GroupResult {
    /// The best aggregate throughput.
    pub fn best(&self) -> f64 {
        self.samples_per_s.iter().copied().fold(0.0, f64::max)
    }
}

/// Trains `groups` trials of `case` packed in lockstep ([`crate::packed::train_packed`])
/// and measures their aggregate training throughput per epoch. `after` is called with
/// the backend while the packed model still holds its buffers (to measure memory).
pub fn run_packed<B: gradsweep_kernels::PackedBackend>(
    backend: &B,
    case: &BenchCase,
    data: &Dataset,
    epochs: u32,
    batch_size: usize,
    groups: usize,
    on_event: &mut dyn FnMut(Event<'_>),
    after: &mut dyn FnMut(&B),
) -> Result<GroupResult, crate::packed::GroupError> {
    let configs = group_configs(case, epochs, batch_size, groups);
    let never = || false;
    fn quietly(_: Event<'_>) {}
    let mut quiet: Vec<fn(Event<'_>)> = vec![quietly; groups.saturating_sub(1)];
    let mut members = Vec::with_capacity(groups);
    members.push(crate::packed::Member {
        config: &configs[0],
        on_event,
        stop: &never,
    });
    for (config, on_event) in configs[1..].iter().zip(quiet.iter_mut()) {
        members.push(crate::packed::Member {
            config,
            on_event,
            stop: &never,
        });
    }
    let (trained, model) = crate::packed::train_packed(backend, data, &mut members)?;
    after(backend);
    drop(model);
    let first = trained[0].as_ref().expect("nothing stops a benchmark");
    Ok(GroupResult {
        how: "packed".into(),
        trials: groups,
        samples_per_s: first
            .epochs
            .iter()
            .map(|e| (groups * data.train.len()) as f64 / e.train_seconds)
            .collect(),
    })
}

/// Trains the same `trials` trials alone, on `slots` threads at once (1: one after the
/// other), each slot with a backend of its own from `make`, and measures the aggregate
/// training throughput: every trial's training samples over the slowest slot's
/// training time.
pub fn run_alone<B: Backend>(
    make: &(dyn Fn() -> gradsweep_kernels::Result<B> + Sync),
    case: &BenchCase,
    data: &Dataset,
    epochs: u32,
    batch_size: usize,
    trials: usize,
    slots: usize,
) -> gradsweep_kernels::Result<GroupResult> {
    let configs = group_configs(case, epochs, batch_size, trials);
    let slots = slots.clamp(1, trials.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut train_seconds = vec![0.0f64; slots];
    std::thread::scope(|scope| -> gradsweep_kernels::Result<()> {
        let handles: Vec<_> = (0..slots)
            .map(|_| {
                let (configs, next) = (&configs, &next);
                scope.spawn(move || -> gradsweep_kernels::Result<f64> {
                    let backend = make()?;
                    let mut seconds = 0.0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(config) = configs.get(i) else { break };
                        let trained = train::train(&backend, config, data, &mut |_| {})?;
                        seconds += trained.epochs.iter().map(|e| e.train_seconds).sum::<f64>();
                    }
                    Ok(seconds)
                })
            })
            .collect();
        for (slot, handle) in handles.into_iter().enumerate() {
            train_seconds[slot] = handle.join().expect("a benchmark slot panicked")?;
        }
        Ok(())
    })?;
    let samples = (trials * data.train.len()) as f64 * f64::from(epochs);
    // Training time only (evaluation excluded, as for the packed group): the slowest
    // slot's, since the slots train at the same time.
    let seconds = train_seconds.iter().copied().fold(0.0, f64::max);
    Ok(GroupResult {
        how: format!("alone on {slots} slot{}", if slots == 1 { "" } else { "s" }),
        trials,
        samples_per_s: vec![samples / seconds],
    })
}

/// `worker bench --pack G [--slots S]`: for each case, `G` trials (seeds 0…G−1) trained
/// packed, then (unless `slots` is 0) the same trials alone on `slots` slots; prints the
/// aggregate samples/s of both and, on a GPU, the device memory the packed group held.
pub fn pack_cli(
    cases: &[BenchCase],
    n: usize,
    epochs: u32,
    batch: usize,
    groups: usize,
    slots: usize,
    threads: usize,
    device_spec: &str,
    json: bool,
) -> anyhow::Result<()> {
    use crate::device::{self, Device};
    anyhow::ensure!(groups >= 1, "--pack must be at least 1");
    let (device, note) = device::resolve(device_spec, threads)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let data = cifar_shaped(n, 0);
    let mut out = Vec::new();
    if !json {
        println!(
            "worker bench --pack {groups}: {n} CIFAR-shaped samples, batch {batch}, SGD momentum 0.9, \
             {epochs} epochs, on {}",
            device.name()
        );
    }
    for case in cases {
        for config in group_configs(case, epochs, batch, 1) {
            crate::trial::check_splits(&config, &data)
                .map_err(|e| anyhow::anyhow!("--batch: {e}"))?;
        }
        let free = |d: &Device| match d {
            Device::Cuda(gpu) => gpu.memory().ok().map(|(free, _)| free as u64),
            Device::Cpu(_) => None,
        };
        let configs = group_configs(case, epochs, batch, groups);
        let refs: Vec<&TrialConfig> = configs.iter().collect();
        // The estimate's device bytes per member (without the dataset and the reserve).
        let estimated = crate::memory::group_estimate(&refs, &data)
            .itemised(crate::memory::Place::Device)
            / groups as u64;
        let before = free(&device);
        let mut held = None;
        let packed = match &device {
            Device::Cpu(cpu) => run_packed(
                cpu,
                case,
                &data,
                epochs,
                batch,
                groups,
                &mut |_| {},
                &mut |_| {},
            )?,
            Device::Cuda(gpu) => run_packed(
                gpu.as_ref(),
                case,
                &data,
                epochs,
                batch,
                groups,
                &mut |_| {},
                &mut |g| {
                    held = g.memory().ok().map(|(free, _)| free as u64);
                },
            )?,
        };
        // Device memory the group held, and how many trials of that size the free memory
        // before it had room for.
        let memory = match (before, held) {
            (Some(before), Some(held)) if before > held => {
                let per_trial = (before - held) / groups as u64;
                Some((before - held, per_trial, before / per_trial.max(1)))
            }
            _ => None,
        };
        let alone = if slots == 0 {
            None
        } else {
            let spec = device_spec.to_string();
            let per_slot = (threads / slots.max(1)).max(1);
            let make = move || -> gradsweep_kernels::Result<Device> {
                device::resolve(&spec, per_slot)
                    .map(|(d, _)| d)
                    .map_err(|e| gradsweep_kernels::Error::Device(e.to_string()))
            };
            Some(match &device {
                Device::Cpu(_) => run_alone(
                    &|| {
                        make().map(|d| match d {
                            Device::Cpu(c) => c,
                            Device::Cuda(_) => unreachable!("the same device spec"),
                        })
                    },
                    case,
                    &data,
                    epochs,
                    batch,
                    groups,
                    slots,
                )?,
                Device::Cuda(_) => run_alone(
                    &|| {
                        make().and_then(|d| match d {
                            Device::Cuda(g) => Ok(*g),
                            Device::Cpu(_) => {
                                Err(gradsweep_kernels::Error::Device("no GPU for a slot".into()))
                            }
                        })
                    },
                    case,
                    &data,
                    epochs,
                    batch,
                    groups,
                    slots,
                )?,
            })
        };
        if !json {
            print!(
                "{:<13} packed G={groups}: {:>10.0} samples/s",
                case.name,
                packed.best()
            );
            if let Some(alone) = &alone {
                print!(
                    "   {}: {:>10.0} samples/s   packed/alone {:.2}×",
                    alone.how,
                    alone.best(),
                    packed.best() / alone.best().max(f64::MIN_POSITIVE)
                );
            }
            println!();
            if let Some((total, per_trial, fits)) = memory {
                println!(
                    "{:<13} GPU memory held by the group: {} ({} per trial, estimated {}); the free memory before it fits about {fits} such trials",
                    "",
                    crate::memory::human(total),
                    crate::memory::human(per_trial),
                    crate::memory::human(estimated)
                );
            }
        }
        out.push(serde_json::json!({
            "case": case.name,
            "packed": packed,
            "alone": alone,
            "memory_bytes": memory.map(|m| m.0),
            "memory_per_trial_bytes": memory.map(|m| m.1),
            "estimated_per_trial_bytes": estimated,
            "trials_that_fit": memory.map(|m| m.2),
        }));
    }
    if json {
        let doc = serde_json::json!({
            "device": device.name(),
            "n": n,
            "batch": batch,
            "epochs": epochs,
            "pack": groups,
            "slots": slots,
            "results": out,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
