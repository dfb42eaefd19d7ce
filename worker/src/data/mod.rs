//! Datasets as the trainer sees them: images held as `u8`, labels as `u8`, three splits.
//!
//! Every loader produces a [`Dataset`]; the trainer standardises per channel with the
//! train split's statistics ([`Dataset::channel_stats`]) when it builds each batch.

pub mod synthetic;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The shape of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ImageShape {
    /// Colour channels (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// Values per image (`channels × height × width`).
    pub fn features(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// One split: `len()` images stored one after another, each channel-major
/// (all of channel 0 row by row, then channel 1, …), and their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// `len × features` pixel values, 0–255.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize], features: usize) -> Split {
        let mut out = Split {
            images: Vec::with_capacity(indices.len() * features),
            labels: Vec::with_capacity(indices.len()),
        };
        for &i in indices {
            out.images
                .extend_from_slice(&self.images[i * features..(i + 1) * features]);
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// A dataset ready to train on.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The name the trial gave (`synthetic:glyphs`, …).
    pub name: String,
    /// Shape of each image.
    pub shape: ImageShape,
    /// Number of classes; labels are `0..classes`.
    pub classes: usize,
    /// Training split.
    pub train: Split,
    /// Validation split (carved from the training images).
    pub val: Split,
    /// Test split.
    pub test: Split,
}

impl Dataset {
    /// Builds a dataset from a pool of training images and a test split, carving the
    /// validation split out of the pool with a fixed seeded shuffle: `val_fraction` of
    /// the pool (rounded) goes to validation, the rest to training, each keeping the
    /// shuffled order.
    pub fn from_pool(
        name: &str,
        shape: ImageShape,
        classes: usize,
        pool: Split,
        test: Split,
        val_fraction: f64,
    ) -> Dataset {
        let n = pool.len();
        let n_val = (((n as f64) * val_fraction).round() as usize).min(n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
        let features = shape.features();
        let val = pool.select(&order[..n_val], features);
        let train = pool.select(&order[n_val..], features);
        Dataset {
            name: name.to_string(),
            shape,
            classes,
            train,
            val,
            test,
        }
    }

    /// Per-channel mean and standard deviation (population) of the train split's
    /// pixels scaled to [0, 1]. A channel with zero spread gets std 1.
    pub fn channel_stats(&self) -> Vec<(f64, f64)> {
        let plane = self.shape.height * self.shape.width;
        let features = self.shape.features();
        let mut sums = vec![(0u64, 0u64); self.shape.channels];
        for image in self.train.images.chunks_exact(features) {
            for (c, s) in sums.iter_mut().enumerate() {
                for &p in &image[c * plane..(c + 1) * plane] {
                    s.0 += p as u64;
                    s.1 += (p as u64) * (p as u64);
                }
            }
        }
        let count = (self.train.len() * plane).max(1) as f64;
        sums.into_iter()
            .map(|(s, s2)| {
                let mean = s as f64 / count / 255.0;
                let var = (s2 as f64 / count / (255.0 * 255.0) - mean * mean).max(0.0);
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                (mean, std)
            })
            .collect()
    }
}

/// The seed of the train/validation split: fixed, so that every trial on a dataset
/// sees the same split whatever its own seed.
pub const SPLIT_SEED: u64 = 0x5eed_da7a;

/// A dataset that cannot be loaded, with the name or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset string names no known kind.
    #[error(
        "dataset \"{0}\": unknown kind; expected synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>"
    )]
    UnknownKind(String),
    /// A `synthetic:` name that is not built in.
    #[error(
        "dataset \"synthetic:{name}\": no built-in dataset \"{name}\"; expected one of {known}"
    )]
    UnknownSynthetic {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: String,
    },
    /// A kind this build cannot read yet.
    #[error("dataset \"{0}\": this kind of dataset is not supported yet")]
    Unsupported(String),
}

/// Loads the dataset a trial names (`synthetic:<name>`, …).
pub fn load(spec: &str, val_fraction: f64) -> Result<Dataset, DataError> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| DataError::UnknownKind(spec.to_string()))?;
    match kind {
        "synthetic" => synthetic::load(rest, val_fraction),
        "cifar10" | "gurmukhi" => Err(DataError::Unsupported(spec.to_string())),
        _ => Err(DataError::UnknownKind(spec.to_string())),
    }
}
