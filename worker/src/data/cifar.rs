//! CIFAR-10, official binary version (`cifar10:<dir>`, the `cifar-10-batches-bin/`
//! directory of the archive).
//!
//! The directory holds `data_batch_1.bin` … `data_batch_5.bin` (the 50,000 training
//! images) and `test_batch.bin` (the 10,000 test images). Each file is a run of
//! 3,073-byte records: one label byte (0–9), then 1,024 red, 1,024 green and 1,024 blue
//! bytes, each plane 32×32 row-major. That is already our channel-major layout, so a
//! record's pixels are copied as they are.
//!
//! The official files hold 10,000 records each; any whole number of records is
//! accepted (tests write small files in the same format), but a size that is not a
//! multiple of 3,073 is refused as truncated. Each file is read straight into the final
//! buffer, sized from the files' lengths up front, so loading peaks at the data's own
//! size (≈184 MB) plus the validation split carved from it.

use super::{DataError, Dataset, ImageShape, Split};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Every CIFAR-10 image: three channels (R, G, B), 32×32.
pub const SHAPE: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};

/// Ten classes: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
pub const CLASSES: usize = 10;

/// Bytes per record: the label byte and 3,072 pixel bytes.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;

/// The training batch files, in the order their images are pooled.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Loads the CIFAR-10 binary files in `dir`; `name` is the trial's dataset string. The
/// validation split is `val_fraction` of the 50,000 training images, carved by
/// [`Dataset::from_pool`].
pub fn load(name: &str, dir: &Path, val_fraction: f64) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDirectory {
            path: dir.to_path_buf(),
            what: "CIFAR-10 directory (cifar-10-batches-bin)",
        });
    }
    // Check every file's presence and size before reading any, so that a missing or
    // truncated last file is reported at once, not after reading 150 MB.
    let train: Vec<(PathBuf, usize)> = TRAIN_FILES
        .iter()
        .map(|f| records_in(&dir.join(f)).map(|n| (dir.join(f), n)))
        .collect::<Result<_, _>>()?;
    let test_path = dir.join(TEST_FILE);
    let test_records = records_in(&test_path)?;

    let pool = read_files(&train)?;
    let test = read_files(&[(test_path, test_records)])?;
    Ok(Dataset::from_pool(
        name,
        SHAPE,
        CLASSES,
        pool,
        test,
        val_fraction,
    ))
}

/// The number of records in a batch file, from its size.
fn records_in(path: &Path) -> Result<usize, DataError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => {
            return Err(DataError::MissingBatchFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::MissingBatchFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let size = meta.len();
    if size == 0 {
        return Err(DataError::EmptyBatchFile {
            path: path.to_path_buf(),
        });
    }
    if size % RECORD_BYTES as u64 != 0 {
        return Err(DataError::TruncatedBatchFile {
            path: path.to_path_buf(),
            size,
        });
    }
    Ok((size / RECORD_BYTES as u64) as usize)
}

/// Reads `files` (each with its record count) one after another into one split.
fn read_files(files: &[(PathBuf, usize)]) -> Result<Split, DataError> {
    let total: usize = files.iter().map(|(_, n)| n).sum();
    let features = SHAPE.features();
    let mut split = Split {
        images: vec![0; total * features],
        labels: vec![0; total],
    };
    let mut at = 0;
    for (path, records) in files {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        for record in 0..*records {
            let mut label = [0u8];
            let image = &mut split.images[at * features..(at + 1) * features];
            reader
                .read_exact(&mut label)
                .and_then(|()| reader.read_exact(image))
                .map_err(|e| match e.kind() {
                    // The file shrank between its size check and its reading.
                    std::io::ErrorKind::UnexpectedEof => DataError::TruncatedBatchFile {
                        path: path.clone(),
                        size: std::fs::metadata(path).map_or(0, |m| m.len()),
                    },
                    _ => DataError::io(path, e),
                })?;
            if label[0] as usize >= CLASSES {
                return Err(DataError::BadLabel {
                    path: path.clone(),
                    record,
                    label: label[0],
                });
            }
            split.labels[at] = label[0];
            at += 1;
        }
    }
    Ok(split)
}
