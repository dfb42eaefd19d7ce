//! The dataset fingerprint: a BLAKE3 hash of the data exactly as the trainer sees it.
//!
//! Hashed, in order: a version tag, the image shape and the number of classes, then for
//! each split (train, validation, test) its image count, its pixels and its labels.
//! The dataset's *name* is left out on purpose — the same files under another path
//! (`gurmukhi:/data/g` on one machine, `gurmukhi:/mnt/g` on another) are the same data —
//! while the split is in: a different `val_fraction` trains on different images and so
//! gets a different fingerprint.
//!
//! BLAKE3 hashes a few GB/s on one core, so fingerprinting CIFAR-10's 184 MB costs well
//! under a second and is done once, at load.

use super::{ImageShape, Split};

/// Bumped whenever what is hashed changes, so old and new fingerprints never collide.
const VERSION: &[u8] = b"gradsweep dataset fingerprint v1";

/// The fingerprint of a dataset's shape, classes and splits (train, validation, test)
/// as lowercase hex: 64 digits, 256 bits.
pub fn of(shape: ImageShape, classes: usize, splits: [&Split; 3]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(VERSION);
    for n in [shape.channels, shape.height, shape.width, classes] {
        hasher.update(&(n as u64).to_le_bytes());
    }
    for split in splits {
        hasher.update(&(split.len() as u64).to_le_bytes());
        hasher.update(&split.images);
        hasher.update(&split.labels);
    }
    hasher.finalize().to_hex().to_string()
}

/// The first 16 hex digits (64 bits): enough for a person to compare two machines'
/// headers at a glance.
pub fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(images: &[u8], labels: &[u8]) -> Split {
        Split {
            images: images.to_vec(),
            labels: labels.to_vec(),
        }
    }

    const SHAPE: ImageShape = ImageShape {
        channels: 1,
        height: 1,
        width: 2,
    };

    #[test]
    fn changes_with_any_pixel_label_or_split_boundary() {
        let a = split(&[1, 2, 3, 4], &[0, 1]);
        let e = Split::default();
        let base = of(SHAPE, 2, [&a, &e, &e]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, of(SHAPE, 2, [&a.clone(), &e, &e]));
        let pixel = split(&[1, 2, 3, 5], &[0, 1]);
        let label = split(&[1, 2, 3, 4], &[0, 0]);
        assert_ne!(base, of(SHAPE, 2, [&pixel, &e, &e]));
        assert_ne!(base, of(SHAPE, 2, [&label, &e, &e]));
        assert_ne!(base, of(SHAPE, 3, [&a, &e, &e]));
        // The same images, one moved from train to validation.
        let (t, v) = (split(&[1, 2], &[0]), split(&[3, 4], &[1]));
        assert_ne!(base, of(SHAPE, 2, [&t, &v, &e]));
        assert_ne!(of(SHAPE, 2, [&t, &v, &e]), of(SHAPE, 2, [&t, &e, &v]));
        assert_eq!(short(&base), &base[..16]);
    }
}
