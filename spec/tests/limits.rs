//! Every limit of `gradsweep_spec::limits` at, below and above its value, through the
//! parsers users reach (trial files, sweep specs, sweep grids), and the datasets and
//! validation fractions refused at parse time. Every refusal is one line naming the
//! field, the value and the limit.

use gradsweep_spec::limits::{self, *};
use gradsweep_spec::{DEFAULT_MAX_TRIALS, SpecError, SweepSpec, TrialConfig};

const BASE: &str = "dataset = \"synthetic:glyphs-tiny\"\n";

fn trial(extra: &str) -> Result<TrialConfig, String> {
    TrialConfig::from_toml_str(&format!("{BASE}{extra}")).map_err(|e| one_line(e.to_string()))
}

fn refused(extra: &str) -> String {
    match trial(extra) {
        Ok(_) => panic!("accepted: {}", &extra[..extra.len().min(200)]),
        Err(e) => e,
    }
}

fn sweep(text: &str) -> Result<usize, String> {
    SweepSpec::from_toml_str(text)
        .and_then(|s| s.expand(DEFAULT_MAX_TRIALS))
        .map(|t| t.len())
        .map_err(|e| one_line(e.to_string()))
}

fn one_line(line: String) -> String {
    assert!(!line.contains('\n'), "{line:?}");
    assert!(line.len() < 400, "long message: {line}");
    line
}

/// `[1, 1, …]` with `n` entries.
fn ones(n: usize) -> String {
    format!("[{}]", vec!["1"; n].join(", "))
}

#[test]
fn layers() {
    assert_eq!(
        trial(&format!("hidden = {}", ones(MAX_LAYERS)))
            .unwrap()
            .hidden
            .len(),
        1024
    );
    assert!(trial(&format!("hidden = {}", ones(MAX_LAYERS - 1))).is_ok());
    assert_eq!(
        refused(&format!("hidden = {}", ones(MAX_LAYERS + 1))),
        "hidden: 1025 layers; the limit is 1024 (limits::MAX_LAYERS)"
    );
    assert_eq!(
        refused(&format!("hidden = [{}]", vec!["1"; 100_000].join(","))),
        "hidden: 100000 layers; the limit is 1024 (limits::MAX_LAYERS)"
    );
}

#[test]
fn units() {
    assert!(trial("hidden = [65536]").is_ok());
    assert!(trial("hidden = [65535, 3072]").is_ok());
    assert_eq!(
        refused("hidden = [64, 65537]"),
        "hidden[1]: 65537 units; the limit is 65536 (limits::MAX_UNITS)"
    );
    assert_eq!(
        refused("hidden = [1000000000]"),
        "hidden[0]: 1000000000 units; the limit is 65536 (limits::MAX_UNITS)"
    );
    assert_eq!(
        refused("hidden = [9223372036854775807]"),
        "hidden[0]: 9223372036854775807 units; the limit is 65536 (limits::MAX_UNITS)"
    );
}

#[test]
fn hidden_weights() {
    // 32768² = 2³⁰: at the limit.
    assert!(trial("hidden = [32768, 32768]").is_ok());
    assert!(trial("hidden = [32768, 32767]").is_ok());
    assert_eq!(
        refused("hidden = [32768, 32769]"),
        "hidden: 1073774592 hidden-to-hidden weights; the limit is 1073741824 (limits::MAX_HIDDEN_WEIGHTS)"
    );
    // A CIFAR-10 MLP of ten 4096-wide layers is far inside.
    assert!(trial(&format!("hidden = [{}]", ["4096"; 10].join(", "))).is_ok());
    // Sixty-five 4096×4096 blocks are not.
    assert!(
        refused(&format!("hidden = [{}]", ["4096"; 66].join(", "))).ends_with(
            "hidden-to-hidden weights; the limit is 1073741824 (limits::MAX_HIDDEN_WEIGHTS)"
        )
    );
}

#[test]
fn batch_sizes() {
    for key in ["batch_size", "eval_batch_size"] {
        assert!(trial(&format!("{key} = 1048576")).is_ok());
        assert!(trial(&format!("{key} = 1048575")).is_ok());
        assert!(trial(&format!("{key} = 45000")).is_ok());
        assert_eq!(
            refused(&format!("{key} = 1048577")),
            format!("{key}: 1048577 examples; the limit is 1048576 (limits::MAX_BATCH_SIZE)")
        );
        assert_eq!(
            refused(&format!("{key} = 1000000000")),
            format!("{key}: 1000000000 examples; the limit is 1048576 (limits::MAX_BATCH_SIZE)")
        );
        assert_eq!(
            refused(&format!("{key} = 1e9")),
            format!("{key}: expected an integer, got a float")
        );
    }
}

#[test]
fn epochs() {
    assert_eq!(trial("epochs = 100000").unwrap().epochs, 100_000);
    assert!(trial("epochs = 99999").is_ok());
    assert!(trial("epochs = 10000").is_ok());
    assert_eq!(
        refused("epochs = 100001"),
        "epochs: 100001 epochs; the limit is 100000 (limits::MAX_EPOCHS)"
    );
}

#[test]
fn gradcheck_samples() {
    assert_eq!(
        trial("[gradcheck]\nsamples = 10000")
            .unwrap()
            .gradcheck
            .samples,
        10_000
    );
    assert!(trial("[gradcheck]\nsamples = 9999").is_ok());
    assert_eq!(
        refused("[gradcheck]\nsamples = 10001"),
        "gradcheck.samples: 10001 entries; the limit is 10000 (limits::MAX_GRADCHECK_SAMPLES)"
    );
}

#[test]
fn name_and_dataset_lengths() {
    let name = |n: usize| format!("name = \"{}\"", "é".repeat(n / 2) + &"n".repeat(n % 2));
    assert!(trial(&name(MAX_NAME_BYTES)).is_ok());
    assert!(trial(&name(MAX_NAME_BYTES - 1)).is_ok());
    assert_eq!(
        refused(&name(MAX_NAME_BYTES + 1)),
        "name: 257 bytes; the limit is 256 (limits::MAX_NAME_BYTES)"
    );
    // The dataset as the whole string, kind included.
    let dataset = |n: usize| format!("dataset = \"gurmukhi:{}\"", "d".repeat(n - 9));
    let at = TrialConfig::from_toml_str(&dataset(MAX_DATASET_BYTES)).unwrap();
    assert_eq!(at.dataset.len(), 4096);
    assert!(TrialConfig::from_toml_str(&dataset(MAX_DATASET_BYTES - 1)).is_ok());
    assert_eq!(
        TrialConfig::from_toml_str(&dataset(MAX_DATASET_BYTES + 1))
            .unwrap_err()
            .to_string(),
        "dataset: 4097 bytes; the limit is 4096 (limits::MAX_DATASET_BYTES)"
    );
}

#[test]
fn floats() {
    assert!(trial("optimizer = { lr = 1e6 }").is_ok());
    assert!(trial("optimizer = { lr = 1e3 }").is_ok());
    assert_eq!(
        refused("optimizer = { lr = 1000001 }"),
        "optimizer.lr: 1000001; the limit is 1000000 (limits::MAX_LR)"
    );
    assert_eq!(
        refused("optimizer = { kind = \"adam\", lr = 1e300 }"),
        "optimizer.lr: 1e300; the limit is 1000000 (limits::MAX_LR)"
    );
    assert!(trial("optimizer = { weight_decay = 1e6 }").is_ok());
    assert_eq!(
        refused("optimizer = { weight_decay = 2e6 }"),
        "optimizer.weight_decay: 2000000; the limit is 1000000 (limits::MAX_PENALTY)"
    );
    assert!(trial("optimizer = { kind = \"adam\", eps = 1 }").is_ok());
    assert_eq!(
        refused("optimizer = { kind = \"adam\", eps = 1.5 }"),
        "optimizer.eps: 1.5; the limit is 1 (limits::MAX_EPS)"
    );
    assert!(trial("regularization = \"l2:1e6+l1:999999\"").is_ok());
    assert_eq!(
        refused("regularization = \"l2:1e7\""),
        "regularization: l2 strength 10000000; the limit is 1000000 (limits::MAX_PENALTY)"
    );
    assert_eq!(
        refused("optimizer = { lr = nan }"),
        "optimizer.lr: must be a positive finite number, got NaN"
    );
}

#[test]
fn val_fraction() {
    assert_eq!(trial("val_fraction = 0.5").unwrap().val_fraction, 0.5);
    assert!(trial("val_fraction = 0.4999").is_ok());
    assert!(trial("val_fraction = 0.001").is_ok());
    assert_eq!(
        refused("val_fraction = 0"),
        "val_fraction: must be in (0, 0.5], got 0: without a validation split the validation loss and accuracy would read 0"
    );
    assert_eq!(
        refused("val_fraction = 0.0"),
        "val_fraction: must be in (0, 0.5], got 0: without a validation split the validation loss and accuracy would read 0"
    );
    let more = ": it would hold out more of the training pool than it trains on (limits::MAX_VAL_FRACTION)";
    assert_eq!(
        refused("val_fraction = 0.999999"),
        format!("val_fraction: must be in (0, 0.5], got 0.999999{more}")
    );
    assert_eq!(
        refused("val_fraction = 0.5000001"),
        format!("val_fraction: must be in (0, 0.5], got 0.5000001{more}")
    );
    assert_eq!(
        refused("val_fraction = 1"),
        format!("val_fraction: must be in (0, 0.5], got 1{more}")
    );
    // And in a sweep's grid, before any trial is tried.
    assert_eq!(
        sweep(&format!("{BASE}[grid]\nval_fraction = [0.1, 0]")).unwrap_err(),
        "grid.val_fraction[1]: must be in (0, 0.5], got 0: without a validation split the validation loss and accuracy would read 0"
    );
}

#[test]
fn datasets_are_refused_at_parse_time() {
    let cases = [
        (
            "imagenet:/data",
            "unknown dataset kind \"imagenet\" in \"imagenet:/data\"; expected one of synthetic, cifar10, gurmukhi",
        ),
        (
            "synthetic:nope",
            "no built-in dataset \"nope\" in \"synthetic:nope\"; expected one of synthetic:glyphs, synthetic:glyphs-small, synthetic:glyphs-tiny",
        ),
        (
            "gurmukhi:",
            "no directory after \"gurmukhi:\"; expected gurmukhi:<dir>",
        ),
        (
            "cifar10:",
            "no directory after \"cifar10:\"; expected cifar10:<dir>",
        ),
        (
            "/data/cifar",
            "expected \"<kind>:<source>\" (synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>), got \"/data/cifar\"",
        ),
    ];
    for (dataset, why) in cases {
        assert_eq!(
            TrialConfig::from_toml_str(&format!("dataset = \"{dataset}\""))
                .unwrap_err()
                .to_string(),
            format!("dataset: {why}")
        );
        // A sweep refuses it at the top level and in the grid.
        assert_eq!(
            sweep(&format!("dataset = \"{dataset}\"")).unwrap_err(),
            format!("dataset: {why}")
        );
        assert_eq!(
            sweep(&format!(
                "[grid]\ndataset = [\"synthetic:glyphs\", \"{dataset}\"]"
            ))
            .unwrap_err(),
            format!("grid.dataset[1]: {why}")
        );
    }
    for dataset in [
        "synthetic:glyphs",
        "synthetic:glyphs-small",
        "synthetic:glyphs-tiny",
        "cifar10:/data/cifar-10-batches-bin",
        "gurmukhi:data/gurmukhi",
    ] {
        assert!(TrialConfig::from_toml_str(&format!("dataset = \"{dataset}\"")).is_ok());
    }
}

#[test]
fn seeds() {
    let seeds = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("{BASE}seeds = [{}]", list.join(", "))
    };
    assert_eq!(sweep(&seeds(MAX_SEEDS)), Ok(10_000));
    assert_eq!(sweep(&seeds(MAX_SEEDS - 1)), Ok(9_999));
    assert_eq!(
        sweep(&seeds(MAX_SEEDS + 1)).unwrap_err(),
        "seeds: 10001 seeds; the limit is 10000 (limits::MAX_SEEDS)"
    );
}

#[test]
fn grid_size() {
    // 10 seeds × 100 batch sizes × 100 epoch counts: exactly the limit.
    let list = |n: usize| {
        let l: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        format!("[{}]", l.join(", "))
    };
    let text = |epochs: usize| {
        format!(
            "{BASE}seeds = {}\n[grid]\nbatch_size = {}\nepochs = {}\n",
            list(10),
            list(100),
            list(epochs)
        )
    };
    assert_eq!(sweep(&text(100)), Ok(100_000));
    assert_eq!(sweep(&text(99)), Ok(99_000));
    assert_eq!(
        sweep(&text(101)).unwrap_err(),
        "the grid expands into 101000 trials, more than the limit of 100000"
    );
    assert_eq!(MAX_TRIALS, DEFAULT_MAX_TRIALS);
}

#[test]
fn text_size() {
    // Padded with a comment to exactly `len` bytes.
    let padded = |body: &str, len: usize| {
        let pad = len - body.len() - 2;
        let text = format!("{body}#{}\n", "x".repeat(pad));
        assert_eq!(text.len(), len);
        text
    };
    assert!(TrialConfig::from_toml_str(&padded(BASE, MAX_TEXT_BYTES)).is_ok());
    assert!(TrialConfig::from_toml_str(&padded(BASE, MAX_TEXT_BYTES - 1)).is_ok());
    assert_eq!(
        TrialConfig::from_toml_str(&padded(BASE, MAX_TEXT_BYTES + 1))
            .unwrap_err()
            .to_string(),
        "trial file of 262145 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)"
    );
    assert_eq!(sweep(&padded(BASE, MAX_TEXT_BYTES)), Ok(1));
    assert_eq!(
        sweep(&padded(BASE, MAX_TEXT_BYTES + 1)).unwrap_err(),
        "spec of 262145 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)"
    );
    // A 5 MB spec (a long comment) is one line, whatever is in it.
    let e = SweepSpec::from_toml_str(&padded(BASE, 5 << 20)).unwrap_err();
    assert!(matches!(e, SpecError::Invalid(_)));
    assert_eq!(
        e.to_string(),
        "spec of 5242880 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)"
    );
    assert_eq!(limits::max_text_bytes(), MAX_TEXT_BYTES as u64);
}

#[test]
fn trial_files_over_the_limit_are_not_read() {
    let dir = std::env::temp_dir().join(format!("gradsweep-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A sparse 5 GB file: refused by its size, before a byte is read.
    let huge = dir.join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    assert_eq!(
        TrialConfig::from_file(&huge).unwrap_err().to_string(),
        format!(
            "{}: trial file of 5368709120 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)",
            huge.display()
        )
    );
    // A file that claims no size but never ends is cut at the limit.
    if std::path::Path::new("/dev/zero").exists() {
        assert_eq!(
            TrialConfig::from_file(std::path::Path::new("/dev/zero"))
                .unwrap_err()
                .to_string(),
            "/dev/zero: trial file of 262145 bytes; the limit is 262144 (limits::MAX_TEXT_BYTES)"
        );
    }
    let binary = dir.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        TrialConfig::from_file(&binary).unwrap_err().to_string(),
        format!(
            "{}: cannot read file: stream did not contain valid UTF-8",
            binary.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_applies_the_limits_to_built_configs() {
    let mut c = TrialConfig {
        hidden: vec![1_000_000_000],
        ..TrialConfig::default()
    };
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "hidden[0]: 1000000000 units; the limit is 65536 (limits::MAX_UNITS)"
    );
    c.hidden = vec![1; 100_000];
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "hidden: 100000 layers; the limit is 1024 (limits::MAX_LAYERS)"
    );
    c.hidden = vec![64];
    c.batch_size = 1_000_000_000;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "batch_size: 1000000000 examples; the limit is 1048576 (limits::MAX_BATCH_SIZE)"
    );
    c.batch_size = 64;
    c.val_fraction = 0.0;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("val_fraction: must be in (0, 0.5], got 0")
    );
    c.val_fraction = 0.1;
    c.dataset = "synthetic:nope".into();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("dataset: no built-in dataset")
    );
    c.dataset = "synthetic:glyphs".into();
    c.gradcheck.samples = 20_000;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "gradcheck.samples: 20000 entries; the limit is 10000 (limits::MAX_GRADCHECK_SAMPLES)"
    );
    c.gradcheck.samples = 64;
    assert_eq!(c.validate(), Ok(()));
}

/// Nesting deep enough to overflow a recursive parser's stack (or a recursive drop) is
/// refused by TOML's recursion limit, in one line, for every way TOML nests.
#[test]
fn deeply_nested_text_is_refused_in_one_line() {
    let mut texts = Vec::new();
    for depth in [100, 1_000, 20_000] {
        let key = vec!["x"; depth].join(".");
        texts.push(format!("{key} = 1\n"));
        texts.push(format!("[{key}]\n"));
        texts.push(format!("[[{key}]]\n"));
        texts.push(format!(
            "hidden = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ));
        texts.push(format!(
            "hidden = {}1{}\n",
            "{ a = ".repeat(depth),
            " }".repeat(depth)
        ));
    }
    for text in texts {
        assert!(text.len() < MAX_TEXT_BYTES);
        let shown = &text[..text.len().min(40)];
        let e = refused(&text);
        assert!(e.contains("nested too deeply"), "{shown}: {e}");
        let e = sweep(&format!("{BASE}{text}")).unwrap_err();
        assert!(e.contains("nested too deeply"), "{shown}: {e}");
    }
}

/// The shipped examples stay within every limit.
#[test]
fn examples_are_within_the_limits() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            TrialConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    for entry in std::fs::read_dir(root.join("sweeps")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(sweep(&text).is_ok());
        seen += 1;
    }
    assert!(seen >= 8, "{seen}");
}
