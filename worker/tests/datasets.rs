//! The real datasets, read as users have them: CIFAR-10's binary files (written here,
//! small, in the exact official format) and the real Gurmukhi digits set.
//!
//! The Gurmukhi tests read `../shared/data/gurmukhi` beside the workspace, or the
//! directory in `GRADSWEEP_GURMUKHI_DIR`; where neither exists they say they were
//! skipped and why, and pass.

use gradsweep_kernels::CpuBackend;
use gradsweep_worker::config::TrialConfig;
use gradsweep_worker::data::{self, DataError, Dataset, gurmukhi};
use gradsweep_worker::report::Outcome;
use gradsweep_worker::trial::{self, TrialRecord};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A scratch directory under the system's temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("gradsweep-datasets-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(config: &TrialConfig, data: &Dataset) -> TrialRecord {
    trial::run(&CpuBackend::<f32>::new(2), config, data, &mut |_| {}).expect("trial runs")
}

fn load_err(spec: &str) -> String {
    let err = data::load(spec, 0.1).expect_err("load fails");
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

// ---------------------------------------------------------------------------------
// CIFAR-10

const PLANE: usize = 32 * 32;
const RECORD: usize = 1 + 3 * PLANE;

/// The record of image `id`: label `id % 10`; red = 8 × column, green = 8 × row,
/// blue = `id` everywhere, so each channel and position is recognisable.
fn cifar_record(id: u8) -> Vec<u8> {
    let mut r = Vec::with_capacity(RECORD);
    r.push(id % 10);
    for channel in 0..3 {
        for row in 0..32u8 {
            for col in 0..32u8 {
                r.push(match channel {
                    0 => col * 8,
                    1 => row * 8,
                    _ => id,
                });
            }
        }
    }
    r
}

/// Writes a CIFAR-10 directory: five training files of `per_file` records (ids
/// 0, 1, … across the files in order) and a test file of `test` records (ids from 200).
fn write_cifar(dir: &Path, per_file: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut id = 0u8;
    for f in 1..=5 {
        let mut bytes = Vec::new();
        for _ in 0..per_file {
            bytes.extend(cifar_record(id));
            id += 1;
        }
        std::fs::write(dir.join(format!("data_batch_{f}.bin")), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..test)
        .flat_map(|i| cifar_record(200 + i as u8))
        .collect();
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    std::fs::write(dir.join("batches.meta.txt"), "airplane\nautomobile\n").unwrap();
}

/// The image's id (its blue plane), after checking every pixel is where it belongs.
fn check_cifar_image(image: &[u8], label: u8) -> u8 {
    assert_eq!(image.len(), 3 * PLANE);
    let id = image[2 * PLANE];
    for row in 0..32 {
        for col in 0..32 {
            let at = row * 32 + col;
            assert_eq!(image[at], col as u8 * 8, "red at row {row} col {col}");
            assert_eq!(
                image[PLANE + at],
                row as u8 * 8,
                "green at row {row} col {col}"
            );
            assert_eq!(image[2 * PLANE + at], id, "blue at row {row} col {col}");
        }
    }
    assert_eq!(label, id % 10, "label of image {id}");
    id
}

fn ids(split: &data::Split) -> Vec<u8> {
    split
        .images
        .chunks_exact(3 * PLANE)
        .zip(&split.labels)
        .map(|(image, &label)| check_cifar_image(image, label))
        .collect()
}

#[test]
fn cifar_pixels_land_in_their_channel_and_position_with_their_labels() {
    let scratch = Scratch::new("cifar-pixels");
    let dir = scratch.0.join("cifar-10-batches-bin");
    write_cifar(&dir, 8, 6);
    let data = data::load(&format!("cifar10:{}", dir.display()), 0.25).unwrap();
    assert_eq!(data.shape.features(), 3072);
    assert_eq!(
        (data.shape.channels, data.shape.height, data.shape.width),
        (3, 32, 32)
    );
    assert_eq!(data.classes, 10);
    assert_eq!(
        (data.train.len(), data.val.len(), data.test.len()),
        (30, 10, 6)
    );
    // The test split keeps the file's order.
    assert_eq!(ids(&data.test), vec![200, 201, 202, 203, 204, 205]);
    let mut pool: Vec<u8> = ids(&data.train);
    pool.extend(ids(&data.val));
    pool.sort();
    assert_eq!(
        pool,
        (0..40).collect::<Vec<u8>>(),
        "every training record, once"
    );
}

#[test]
fn cifar_validation_split_is_seeded_deterministic_and_disjoint() {
    let scratch = Scratch::new("cifar-split");
    let dir = scratch.0.join("c");
    write_cifar(&dir, 10, 4);
    let spec = format!("cifar10:{}", dir.display());
    let a = data::load(&spec, 0.2).unwrap();
    let b = data::load(&spec, 0.2).unwrap();
    assert_eq!((a.train.len(), a.val.len()), (40, 10));
    assert_eq!(a.train, b.train);
    assert_eq!(a.val, b.val);
    assert_eq!(a.fingerprint, b.fingerprint);
    let (train, val) = (ids(&a.train), ids(&a.val));
    let train_set: HashSet<u8> = train.iter().copied().collect();
    assert!(val.iter().all(|id| !train_set.contains(id)), "disjoint");
    assert_eq!(train_set.len() + val.len(), 50);
    // Shuffled, not the files' order.
    assert_ne!(train, (0..40).collect::<Vec<u8>>());
    // A copy of the files elsewhere is the same data; another split is not.
    let copy = scratch.0.join("elsewhere");
    write_cifar(&copy, 10, 4);
    let c = data::load(&format!("cifar10:{}", copy.display()), 0.2).unwrap();
    assert_eq!(c.fingerprint, a.fingerprint);
    assert_ne!(c.name, a.name);
    let d = data::load(&spec, 0.1).unwrap();
    assert_ne!(d.fingerprint, a.fingerprint);
}

#[test]
fn cifar_broken_directories_give_one_line_errors_naming_the_file() {
    let scratch = Scratch::new("cifar-errors");
    let dir = scratch.0.join("c");
    let spec = format!("cifar10:{}", dir.display());
    let fresh = || {
        let _ = std::fs::remove_dir_all(&dir);
        write_cifar(&dir, 3, 3);
    };

    let e = load_err(&spec);
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("not found"),
        "{e}"
    );
    assert!(load_err("cifar10:").contains("no directory"));

    fresh();
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("data_batch_3.bin") && e.contains("not found"),
        "{e}"
    );

    fresh();
    let path = dir.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("data_batch_2.bin") && e.contains("truncated") && e.contains("9218 bytes"),
        "{e}"
    );
    assert!(e.contains("2 records and 3072 bytes over"), "{e}");

    fresh();
    std::fs::write(dir.join("test_batch.bin"), b"").unwrap();
    let e = load_err(&spec);
    assert!(e.contains("test_batch.bin") && e.contains("empty"), "{e}");

    fresh();
    let path = dir.join("data_batch_4.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2 * RECORD] = 10;
    std::fs::write(&path, &bytes).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("data_batch_4.bin") && e.contains("record 2") && e.contains("label byte 10"),
        "{e}"
    );
    let DataError::BadLabel { record, label, .. } = data::load(&spec, 0.1).unwrap_err() else {
        panic!("a bad label");
    };
    assert_eq!((record, label), (2, 10));

    fresh();
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    std::fs::create_dir(dir.join("test_batch.bin")).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("test_batch.bin") && e.contains("not found"),
        "{e}"
    );
}

#[test]
fn a_cifar_directory_trains_through_a_trial() {
    let scratch = Scratch::new("cifar-trial");
    let dir = scratch.0.join("cifar-10-batches-bin");
    // Six files of 20 records: random pixels and labels.
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = 0x9e37_79b9_u32;
    let mut byte = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 24) as u8
    };
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        let mut bytes = Vec::new();
        for _ in 0..20 {
            bytes.push(byte() % 10);
            bytes.extend((0..3 * PLANE).map(|_| byte()));
        }
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let toml = format!(
        r#"
        name = "cifar-smoke"
        dataset = "cifar10:{}"
        epochs = 1
        batch_size = 16
        hidden = [32]
        activation = "relu"
        [gradcheck]
        layer = "linear1"
        samples = 8
        "#,
        dir.display()
    );
    let config = TrialConfig::from_toml_str(&toml).unwrap();
    let data = trial::load_data(&config).unwrap();
    let record = run(&config, &data);
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.epochs.len(), 1);
    assert_eq!(
        (
            record.dataset.train,
            record.dataset.val,
            record.dataset.test
        ),
        (90, 10, 20)
    );
    assert_eq!(record.dataset.shape.features(), 3072);
    assert_eq!(record.dataset.fingerprint, data.fingerprint);
    assert!(record.gradcheck.as_ref().is_some_and(|g| g.passed));
    let json: serde_json::Value = serde_json::to_value(&record).unwrap();
    assert_eq!(json["dataset"]["fingerprint"], data.fingerprint.as_str());
    assert_eq!(data.fingerprint.len(), 64);
}

// ---------------------------------------------------------------------------------
// Gurmukhi

/// The real set, or `None` (after saying why) when it is not on this machine.
fn gurmukhi_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("GRADSWEEP_GURMUKHI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/gurmukhi"
        )),
    };
    if dir.join("train").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: the Gurmukhi set is not at {} (set GRADSWEEP_GURMUKHI_DIR to its directory)",
            dir.display()
        );
        None
    }
}

fn gurmukhi_spec(dir: &Path) -> String {
    format!("gurmukhi:{}", dir.display())
}

fn class_counts(labels: &[u8]) -> [usize; 10] {
    let mut counts = [0; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
}

#[test]
fn gurmukhi_reads_all_1178_images_with_their_class_counts() {
    let Some(dir) = gurmukhi_dir() else { return };
    let started = Instant::now();
    let data = data::load(&gurmukhi_spec(&dir), 0.1).unwrap();
    eprintln!(
        "loaded the Gurmukhi set in {:.3}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        (data.shape.channels, data.shape.height, data.shape.width),
        (1, 32, 32)
    );
    assert_eq!(
        (data.train.len(), data.val.len(), data.test.len()),
        (900, 100, 178)
    );
    let mut pool = data.train.labels.clone();
    pool.extend(&data.val.labels);
    assert_eq!(class_counts(&pool), [100; 10]);
    assert_eq!(
        class_counts(&data.test.labels),
        [18, 16, 17, 17, 18, 18, 18, 18, 18, 20]
    );
    // Ink is 255, background 0; every image has both, and more background than ink —
    // BMP (train, val/9) and TIFF (val/0-8) images alike, so neither is inverted.
    for split in [&data.train, &data.val, &data.test] {
        for (i, image) in split.images.chunks_exact(1024).enumerate() {
            assert!(image.iter().all(|&p| p == 0 || p == 255));
            let ink = image.iter().filter(|&&p| p == 255).count();
            assert!(
                (20..600).contains(&ink),
                "image {i} (class {}) has {ink} ink pixels of 1024",
                split.labels[i]
            );
        }
    }
    let mean_ink = |split: &data::Split, class: u8| {
        let (mut ink, mut n) = (0, 0);
        for (image, &l) in split.images.chunks_exact(1024).zip(&split.labels) {
            if l == class {
                ink += image.iter().filter(|&&p| p == 255).count();
                n += 1;
            }
        }
        ink as f64 / n as f64 / 1024.0
    };
    for class in 0..10 {
        let (train, test) = (mean_ink(&data.train, class), mean_ink(&data.test, class));
        assert!(
            train < 0.45 && test < 0.45,
            "class {class}: ink fraction train {train:.2}, test {test:.2}"
        );
    }
}

#[test]
fn gurmukhi_tiffs_decode_exactly_as_libtiff_does() {
    let Some(dir) = gurmukhi_dir() else { return };
    let reference = match std::env::var_os("GRADSWEEP_GURMUKHI_TIFF_REFERENCE") {
        Some(path) => PathBuf::from(path),
        None => dir.join("../gurmukhi-val-tiff-reference.txt"),
    };
    let Ok(text) = std::fs::read_to_string(&reference) else {
        eprintln!(
            "skipped: no libtiff reference decoding at {} (set GRADSWEEP_GURMUKHI_TIFF_REFERENCE)",
            reference.display()
        );
        return;
    };
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (file, hex) = line.split_once(' ').expect("path and hex");
        assert_eq!(hex.len(), 256, "{file}");
        let image = gurmukhi::read_image(&dir.join(file)).unwrap();
        for row in 0..32 {
            let word = u32::from_str_radix(&hex[row * 8..row * 8 + 8], 16).unwrap();
            for col in 0..32 {
                let ink = (word >> (31 - col)) & 1 == 1;
                assert_eq!(
                    image[row * 32 + col] == gurmukhi::INK,
                    ink,
                    "{file}: row {row} col {col}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 158, "every TIFF of val/0-8");
}

/// A 1-bit BMP of `pixels` (row-major, true = ink), bottom-up as usual, with the
/// palette in either order.
fn bmp(width: u32, height: u32, pixels: &[bool], black_first: bool) -> Vec<u8> {
    let stride = width.div_ceil(32) * 4;
    let data_offset = 14 + 40 + 8;
    let size = data_offset + stride * height;
    let mut b = Vec::new();
    b.extend(b"BM");
    b.extend(size.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(data_offset.to_le_bytes());
    b.extend(40u32.to_le_bytes());
    b.extend((width as i32).to_le_bytes());
    b.extend((height as i32).to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend((stride * height).to_le_bytes());
    b.extend(2835u32.to_le_bytes());
    b.extend(2835u32.to_le_bytes());
    b.extend(2u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    let (black, white) = ([0u8, 0, 0, 0], [255u8, 255, 255, 0]);
    if black_first {
        b.extend(black);
        b.extend(white);
    } else {
        b.extend(white);
        b.extend(black);
    }
    for y in (0..height as usize).rev() {
        let mut row = vec![0u8; stride as usize];
        for x in 0..width as usize {
            // Index of black: 0 when black comes first.
            let index = pixels[y * width as usize + x] != black_first;
            if index {
                row[x / 8] |= 0x80 >> (x % 8);
            }
        }
        b.extend(row);
    }
    b
}

/// A glyph for class `class`: a bar whose position tells the class.
fn glyph(class: usize) -> Vec<bool> {
    (0..1024)
        .map(|i| {
            let (y, x) = (i / 32, i % 32);
            (2 * class + 4..2 * class + 7).contains(&x) && (4..28).contains(&y)
        })
        .collect()
}

/// A tiny Gurmukhi-style directory: one BMP per class in train/ and in val/, the
/// palettes in both orders.
fn write_gurmukhi(dir: &Path) {
    for split in ["train", "val"] {
        for class in 0..10 {
            let folder = dir.join(split).join(class.to_string());
            std::fs::create_dir_all(&folder).unwrap();
            let bytes = bmp(32, 32, &glyph(class), class % 2 == 0);
            std::fs::write(folder.join("1.bmp"), bytes).unwrap();
        }
    }
}

#[test]
fn gurmukhi_bmp_palette_order_does_not_flip_the_ink() {
    let scratch = Scratch::new("gurmukhi-palette");
    let glyph = glyph(3);
    for black_first in [true, false] {
        let path = scratch.0.join(format!("{black_first}.bmp"));
        std::fs::write(&path, bmp(32, 32, &glyph, black_first)).unwrap();
        let image = gurmukhi::read_image(&path).unwrap();
        let expected: Vec<u8> = glyph.iter().map(|&g| if g { 255 } else { 0 }).collect();
        assert_eq!(image, expected, "black first: {black_first}");
    }
    // The same through the loader: a bar at column 2·class + 4, in every split.
    let dir = scratch.0.join("g");
    write_gurmukhi(&dir);
    let data = data::load(&gurmukhi_spec(&dir), 0.2).unwrap();
    assert_eq!(
        (data.train.len(), data.val.len(), data.test.len()),
        (8, 2, 10)
    );
    for split in [&data.train, &data.val, &data.test] {
        for (image, &label) in split.images.chunks_exact(1024).zip(&split.labels) {
            let expected: Vec<u8> = self::glyph(label as usize)
                .iter()
                .map(|&g| if g { 255 } else { 0 })
                .collect();
            assert_eq!(image, expected.as_slice(), "class {label}");
        }
    }
}

#[test]
fn gurmukhi_broken_folders_give_one_line_errors_naming_the_file() {
    let scratch = Scratch::new("gurmukhi-errors");
    let dir = scratch.0.join("g");
    let spec = gurmukhi_spec(&dir);
    let fresh = || {
        let _ = std::fs::remove_dir_all(&dir);
        write_gurmukhi(&dir);
    };
    let e = load_err(&spec);
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("not found"),
        "{e}"
    );

    fresh();
    // Hidden files are skipped.
    std::fs::write(dir.join("train/.DS_Store"), b"junk").unwrap();
    std::fs::write(dir.join("train/4/.hidden.bmp"), b"junk").unwrap();
    data::load(&spec, 0.1).expect("hidden entries are skipped");

    fresh();
    std::fs::remove_dir_all(dir.join("val")).unwrap();
    let e = load_err(&spec);
    assert!(e.contains("val") && e.contains("not found"), "{e}");

    fresh();
    std::fs::remove_dir_all(dir.join("train/6")).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("train/6") && e.contains("class folder not found"),
        "{e}"
    );

    fresh();
    std::fs::remove_file(dir.join("val/3/1.bmp")).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains("val/3") && e.contains("empty class folder"),
        "{e}"
    );

    for stray in ["train/10", "train/x", "train/notes.txt"] {
        fresh();
        if stray.ends_with(".txt") {
            std::fs::write(dir.join(stray), b"hello").unwrap();
        } else {
            std::fs::create_dir(dir.join(stray)).unwrap();
        }
        let e = load_err(&spec);
        assert!(e.contains(stray) && e.contains("unexpected entry"), "{e}");
    }

    fresh();
    let good = std::fs::read(dir.join("train/5/1.bmp")).unwrap();
    for (name, bytes) in [
        ("junk.bmp", b"this is not an image".to_vec()),
        ("cut.bmp", good[..40].to_vec()),
        ("cut-pixels.bmp", good[..good.len() - 50].to_vec()),
        ("cut.tiff", b"II*\0\x08\0\0\0\x01\0".to_vec()),
    ] {
        fresh();
        let path = dir.join("train/5").join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = load_err(&spec);
        assert!(
            e.contains(&path.display().to_string()) && e.contains("unreadable image"),
            "{name}: {e}"
        );
    }

    fresh();
    let path = dir.join("val/7/2.bmp");
    std::fs::write(&path, bmp(16, 20, &[false; 320], true)).unwrap();
    let e = load_err(&spec);
    assert!(
        e.contains(&path.display().to_string()) && e.contains("16×20 pixels, expected 32×32"),
        "{e}"
    );
}

/// A trial on the real set, or `None` when it is absent.
fn gurmukhi_trial(body: &str) -> Option<(TrialRecord, f64)> {
    let dir = gurmukhi_dir()?;
    let toml = format!("dataset = \"{}\"\n{body}", gurmukhi_spec(&dir));
    let config = TrialConfig::from_toml_str(&toml).unwrap();
    let data = trial::load_data(&config).unwrap();
    let started = Instant::now();
    let record = run(&config, &data);
    Some((record, started.elapsed().as_secs_f64()))
}

#[test]
fn gurmukhi_relu_mlp_reaches_90_percent_test_accuracy_within_20_epochs() {
    let Some((record, seconds)) = gurmukhi_trial(
        r#"
        epochs = 20
        batch_size = 32
        hidden = [256, 128]
        activation = "relu"
        optimizer = { kind = "adam", lr = 1e-3 }
        [gradcheck]
        layer = "all"
        samples = 16
        "#,
    ) else {
        return;
    };
    assert_eq!(record.outcome, Outcome::Completed);
    let accs: Vec<String> = record
        .epochs
        .iter()
        .map(|e| format!("{:.1}", e.test_acc * 100.0))
        .collect();
    eprintln!("test accuracy by epoch: {} ({seconds:.2}s)", accs.join(" "));
    let first = record.epochs.iter().find(|e| e.test_acc >= 0.9);
    assert!(first.is_some(), "never reached 90%: {}", accs.join(" "));
    eprintln!("first epoch at ≥ 90%: {}", first.unwrap().epoch);
    assert!(record.gradcheck.as_ref().is_some_and(|g| g.passed));
}

#[test]
fn gurmukhi_deep_sigmoid_vanishes_and_batchnorm_cures_it() {
    let deep = r#"
        epochs = 8
        batch_size = 64
        hidden = [128, 128, 128, 128, 128, 128, 128, 128]
        activation = "sigmoid"
        init = "default"
        batchnorm = false
        optimizer = { kind = "sgd", lr = 0.01, momentum = 0.0 }
        [gradcheck]
        layer = "none"
    "#;
    let Some((sigmoid, _)) = gurmukhi_trial(deep) else {
        return;
    };
    let (bn, _) = gurmukhi_trial(&deep.replace("batchnorm = false", "batchnorm = true")).unwrap();
    assert!(
        sigmoid.verdicts.vanishing_gradients.flagged,
        "{:?}",
        sigmoid.verdicts
    );
    assert!(
        !bn.verdicts.vanishing_gradients.flagged,
        "{:?}",
        bn.verdicts
    );
    let acc = |r: &TrialRecord| r.epochs.last().unwrap().test_acc;
    eprintln!(
        "deep sigmoid: test accuracy {:.3}; with batch norm {:.3}",
        acc(&sigmoid),
        acc(&bn)
    );
    assert!(
        acc(&bn) > acc(&sigmoid) + 0.3,
        "{} vs {}",
        acc(&bn),
        acc(&sigmoid)
    );
}
