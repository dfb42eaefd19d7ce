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
