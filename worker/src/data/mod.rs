//! Datasets as the trainer sees them: images held as `u8`, labels as `u8`, three splits.
//!
//! Every loader produces a [`Dataset`]; the trainer standardises per channel with the
//! train split's statistics ([`Dataset::channel_stats`]) when it builds each batch.
//!
//! # Layout
//!
//! - [`synthetic`]: the built-in glyph sets (`synthetic:<name>`), made from a seed.
//! - [`cifar`]: CIFAR-10's official binary version (`cifar10:<dir>`).
//! - [`gurmukhi`]: the Gurmukhi handwritten digits (`gurmukhi:<dir>`), BMP and TIFF.
//! - [`tiff`]: bilevel TIFF, including CCITT modified Huffman (compression 2).
//! - [`fingerprint`]: the content hash every dataset carries.

pub mod cifar;
pub mod fingerprint;
pub mod gurmukhi;
pub mod synthetic;
pub mod tiff;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

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

    /// Reorders the split in place so that image `i` becomes the one that was at
    /// `order[i]`; `order` must be a permutation of `0..len()`. Moves each image once
    /// along the permutation's cycles, holding one image aside.
    pub fn permute(&mut self, order: &[usize], features: usize) {
        assert_eq!(order.len(), self.len(), "a permutation of the whole split");
        let mut placed = vec![false; order.len()];
        let mut held = vec![0u8; features];
        for start in 0..order.len() {
            if placed[start] || order[start] == start {
                placed[start] = true;
                continue;
            }
            held.copy_from_slice(&self.images[start * features..(start + 1) * features]);
            let held_label = self.labels[start];
            let mut to = start;
            loop {
                placed[to] = true;
                let from = order[to];
                if from == start {
                    self.images[to * features..(to + 1) * features].copy_from_slice(&held);
                    self.labels[to] = held_label;
                    break;
                }
                self.images
                    .copy_within(from * features..(from + 1) * features, to * features);
                self.labels[to] = self.labels[from];
                to = from;
            }
        }
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
    /// Content hash of the data as loaded (see [`fingerprint`]): equal on two machines
    /// only when they train on the same pixels, labels and splits.
    pub fingerprint: String,
}

impl Dataset {
    /// A dataset from its three splits; computes the [`fingerprint`].
    pub fn new(
        name: &str,
        shape: ImageShape,
        classes: usize,
        train: Split,
        val: Split,
        test: Split,
    ) -> Dataset {
        let fingerprint = fingerprint::of(shape, classes, [&train, &val, &test]);
        Dataset {
            name: name.to_string(),
            shape,
            classes,
            train,
            val,
            test,
            fingerprint,
        }
    }

    /// Builds a dataset from a pool of training images and a test split, carving the
    /// validation split out of the pool with a fixed seeded shuffle: `val_fraction` of
    /// the pool (rounded) goes to validation, the rest to training, each keeping the
    /// shuffled order.
    ///
    /// The pool is reordered in place and the validation images copied out of its
    /// tail, so the peak memory is the pool plus the validation split (CIFAR-10:
    /// 150 MB + 15 MB), not twice the pool.
    pub fn from_pool(
        name: &str,
        shape: ImageShape,
        classes: usize,
        mut pool: Split,
        test: Split,
        val_fraction: f64,
    ) -> Dataset {
        let n = pool.len();
        let n_val = (((n as f64) * val_fraction).round() as usize).min(n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
        // Training images first, then validation: both keep the shuffled order.
        order.rotate_left(n_val);
        let features = shape.features();
        pool.permute(&order, features);
        let n_train = n - n_val;
        let val = Split {
            images: pool.images[n_train * features..].to_vec(),
            labels: pool.labels[n_train..].to_vec(),
        };
        pool.images.truncate(n_train * features);
        pool.labels.truncate(n_train);
        // Gives the tail back (glibc shrinks a large block in place, without a copy).
        pool.images.shrink_to_fit();
        Dataset::new(name, shape, classes, pool, val, test)
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

/// A dataset that cannot be loaded, with the name or file at fault. Every message is
/// one line.
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
    /// A `cifar10:` or `gurmukhi:` with nothing after the colon.
    #[error("dataset \"{0}\": no directory given after the colon")]
    NoDirectory(String),
    /// A directory the dataset needs is not there (or is not a directory).
    #[error("{}: {what} not found (no such directory)", .path.display())]
    MissingDirectory {
        /// The directory looked for.
        path: PathBuf,
        /// What it should have held, in the user's words.
        what: &'static str,
    },
    /// A CIFAR-10 batch file is not there.
    #[error(
        "{}: CIFAR-10 batch file not found (a cifar10: directory holds data_batch_1.bin … data_batch_5.bin and test_batch.bin)",
        .path.display()
    )]
    MissingBatchFile {
        /// The file looked for.
        path: PathBuf,
    },
    /// A CIFAR-10 batch file whose size is not a whole number of records.
    #[error(
        "{}: truncated: {size} bytes is not a whole number of 3073-byte records ({} records and {} bytes over; the official files hold 10000 records, 30730000 bytes)",
        .path.display(), .size / cifar::RECORD_BYTES as u64, .size % cifar::RECORD_BYTES as u64
    )]
    TruncatedBatchFile {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// A CIFAR-10 batch file of zero bytes.
    #[error(
        "{}: empty: 0 bytes, no record (the official files hold 10000 records of 3073 bytes)",
        .path.display()
    )]
    EmptyBatchFile {
        /// The file.
        path: PathBuf,
    },
    /// A CIFAR-10 record whose label byte is not a class.
    #[error(
        "{}: record {record}: label byte {label} is not a class (expected 0-9)",
        .path.display()
    )]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The record's index in the file, from 0.
        record: usize,
        /// The byte found.
        label: u8,
    },
    /// A file that could not be read at all.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// An image file that does not decode.
    #[error("{}: unreadable image: {reason}", .path.display())]
    UnreadableImage {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image that decodes but has the wrong size.
    #[error("{}: image is {width}×{height} pixels, expected {expected}×{expected}", .path.display())]
    WrongImageSize {
        /// The file.
        path: PathBuf,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The side every image of the set has.
        expected: u32,
    },
    /// A class folder with no image in it.
    #[error("{}: empty class folder: no image in it", .path.display())]
    EmptyClassFolder {
        /// The folder.
        path: PathBuf,
    },
    /// Something in a split folder that is not a class folder `0`–`9`.
    #[error(
        "{}: unexpected entry: a split folder holds only the class folders 0-9",
        .path.display()
    )]
    UnexpectedClassFolder {
        /// The entry.
        path: PathBuf,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Loads the dataset a trial names: `synthetic:<name>`, `cifar10:<dir>` or
/// `gurmukhi:<dir>` (a directory relative to the working directory, or absolute).
pub fn load(spec: &str, val_fraction: f64) -> Result<Dataset, DataError> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| DataError::UnknownKind(spec.to_string()))?;
    let dir = || {
        if rest.is_empty() {
            Err(DataError::NoDirectory(spec.to_string()))
        } else {
            Ok(Path::new(rest))
        }
    };
    match kind {
        "synthetic" => synthetic::load(rest, val_fraction),
        "cifar10" => cifar::load(spec, dir()?, val_fraction),
        "gurmukhi" => gurmukhi::load(spec, dir()?, val_fraction),
        _ => Err(DataError::UnknownKind(spec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn from_pool_carves_the_same_split_as_selecting_by_the_seeded_order() {
        let shape = ImageShape {
            channels: 2,
            height: 1,
            width: 3,
        };
        let features = shape.features();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [0usize, 1, 2, 7, 100, 1001] {
            let pool = Split {
                images: (0..n * features).map(|_| rng.random()).collect(),
                labels: (0..n).map(|_| rng.random_range(0..10)).collect(),
            };
            for fraction in [0.0, 0.1, 0.5, 1.0] {
                let data =
                    Dataset::from_pool("t", shape, 10, pool.clone(), Split::default(), fraction);
                let n_val = ((n as f64) * fraction).round() as usize;
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
                assert_eq!(data.val, pool.select(&order[..n_val], features), "n {n}");
                assert_eq!(data.train, pool.select(&order[n_val..], features), "n {n}");
            }
        }
    }

    #[test]
    fn permute_follows_every_cycle() {
        let features = 2;
        let mut split = Split {
            images: (0..10u8).flat_map(|i| [i, 100 + i]).collect(),
            labels: (0..10u8).collect(),
        };
        let order = [3, 0, 1, 2, 4, 9, 5, 6, 8, 7];
        let expected = split.select(&order, features);
        split.permute(&order, features);
        assert_eq!(split, expected);
    }
}
