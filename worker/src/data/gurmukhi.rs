//! The Gurmukhi handwritten digits (`gurmukhi:<dir>`), read as users receive them.
//!
//! ```text
//! <dir>/train/<0-9>/*   the training pool (the real set: 100 images a class)
//! <dir>/val/<0-9>/*     the held-out images, used as the test split (16–20 a class)
//! ```
//!
//! The validation split is carved out of `train/` ([`Dataset::from_pool`]), as users of
//! the set do. Every image is 32×32, one bit per pixel, dark ink on a light
//! background; the real set mixes Windows BMP (1 bpp, palette) and TIFF compressed
//! with CCITT modified Huffman (see [`super::tiff`]). A file's format is recognised by
//! its first bytes, not its name. BMPs are decoded by the `image` crate; a pixel is ink
//! when its colour's luminance is below half, so a palette in either order (black
//! first or white first) gives the same image. Ink is stored as 255, background as 0.
//!
//! Files within a class folder are read in byte order of their names, so the pool's
//! order — and with it the validation split and the fingerprint — is the same on every
//! machine whatever order the file system lists them in. Hidden entries (names
//! starting with `.`, such as `.DS_Store`) are skipped; anything else that is not a
//! class folder `0`–`9` is an error, and so is a missing or empty class folder.

use super::tiff as bilevel_tiff;
use super::{DataError, Dataset, ImageShape, Split};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Side of every image, in pixels.
pub const SIDE: u32 = 32;

/// Every Gurmukhi image: one grey channel, 32×32.
pub const SHAPE: ImageShape = ImageShape {
    channels: 1,
    height: SIDE as usize,
    width: SIDE as usize,
};

/// The ten digits 0–9.
pub const CLASSES: usize = 10;

/// The value stored for an ink pixel; background is 0.
pub const INK: u8 = 255;

/// Loads the set in `dir`; `name` is the trial's dataset string. `train/` is the pool
/// the validation split (`val_fraction` of it) is carved from; `val/` is the test split.
pub fn load(name: &str, dir: &Path, val_fraction: f64) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDirectory {
            path: dir.to_path_buf(),
            what: "Gurmukhi directory (holding train/ and val/)",
        });
    }
    let pool = read_split(
        &dir.join("train"),
        "training folder train/ (class folders 0-9)",
    )?;
    let test = read_split(&dir.join("val"), "held-out folder val/ (class folders 0-9)")?;
    Ok(Dataset::from_pool(
        name,
        SHAPE,
        CLASSES,
        pool,
        test,
        val_fraction,
    ))
}

/// Reads one split folder: class folders `0`–`9`, images in each.
pub fn read_split(dir: &Path, what: &'static str) -> Result<Split, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDirectory {
            path: dir.to_path_buf(),
            what,
        });
    }
    for entry in visible_entries(dir)? {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_class = name.len() == 1 && name.as_bytes()[0].is_ascii_digit();
        if !is_class || !entry.is_dir() {
            return Err(DataError::UnexpectedClassFolder { path: entry });
        }
    }
    let mut split = Split::default();
    for class in 0..CLASSES {
        let folder = dir.join(class.to_string());
        if !folder.is_dir() {
            return Err(DataError::MissingDirectory {
                path: folder,
                what: "class folder",
            });
        }
        let files = visible_entries(&folder)?;
        if files.is_empty() {
            return Err(DataError::EmptyClassFolder { path: folder });
        }
        for file in files {
            split.images.extend(read_image(&file)?);
            split.labels.push(class as u8);
        }
    }
    Ok(split)
}

/// The entries of `dir` not starting with `.`, sorted by name.
fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if !entry.file_name().as_encoded_bytes().starts_with(b".") {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

/// Reads one image file (BMP or TIFF, told apart by their first bytes) as
/// `SIDE × SIDE` bytes, row-major: [`INK`] for ink, 0 for background.
pub fn read_image(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let unreadable = |reason: String| DataError::UnreadableImage {
        path: path.to_path_buf(),
        reason,
    };
    let check_size = |(width, height): (u32, u32)| {
        if (width, height) == (SIDE, SIDE) {
            Ok(())
        } else {
            Err(DataError::WrongImageSize {
                path: path.to_path_buf(),
                width,
                height,
                expected: SIDE,
            })
        }
    };
    if bytes.starts_with(b"BM") {
        let reader = image::ImageReader::with_format(Cursor::new(&bytes), image::ImageFormat::Bmp);
        check_size(
            reader
                .into_dimensions()
                .map_err(|e| unreadable(e.to_string()))?,
        )?;
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Bmp)
            .map_err(|e| unreadable(e.to_string()))?;
        // Rec. 709 luma of each pixel's colour: ink is the dark side.
        let grey = image.to_luma8();
        Ok(grey
            .as_raw()
            .iter()
            .map(|&l| if l < 128 { INK } else { 0 })
            .collect())
    } else if bilevel_tiff::is_tiff(&bytes) {
        check_size(
            bilevel_tiff::dimensions(&bytes).map_err(|e| unreadable(format!("TIFF: {e}")))?,
        )?;
        let image = bilevel_tiff::decode(&bytes).map_err(|e| unreadable(format!("TIFF: {e}")))?;
        Ok(image.pixels.iter().map(|&p| p * INK).collect())
    } else {
        let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Err(unreadable(format!(
            "neither BMP nor TIFF (the file starts with bytes [{}])",
            start.join(" ")
        )))
    }
}
