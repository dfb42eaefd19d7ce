//! Pins the canonical TOML, the axis labels and the trial keys (BLAKE3 of the canonical
//! TOML) of a few configs and sweeps, as the code wrote them before the trial keys were
//! gathered into one table: a stored sweep's trials must keep their keys.

use gradsweep_spec::trial::TRIAL_KEYS;
use gradsweep_spec::{SweepSpec, TrialConfig, trial_key};

const FULL: &str = r#"
name = "deep-sigmoid"
dataset = "cifar10:/data/cifar-10-batches-bin"
val_fraction = 0.2
epochs = 20
batch_size = 64
eval_batch_size = 500
seed = 7
hidden = [512, 256, 128]
activation = "leaky_relu"
init = "he_normal"
batchnorm = true
regularization = "l2:1e-4+dropout:0.2"
optimizer = { kind = "adam", lr = 3e-4, betas = [0.8, 0.99], eps = 1e-7, weight_decay = 1 }

[gradcheck]
layer = "linear2"
samples = 16
"#;

const ODD: &str = r#"
name = "quote \" back\\slash ünï"
dataset = "gurmukhi:data/gurmukhi digits"
val_fraction = 0.05
hidden = []
regularization = "l1:1e-5+l2:0.0001+dropout:0.5"
optimizer = { lr = 1, momentum = 0, weight_decay = 5e-4 }
[gradcheck]
layer = "none"
samples = 1
"#;

/// (trial file, canonical TOML, key, field texts in `TRIAL_KEYS` order)
const PINS: [(&str, &str, &str, [&str; 14]); 3] = [
    (
        "dataset = \"synthetic:glyphs\"",
        "name = \"trial\"\ndataset = \"synthetic:glyphs\"\nval_fraction = 0.1\nepochs = 10\nbatch_size = 128\neval_batch_size = 1000\nseed = 0\nhidden = [256, 128]\nactivation = \"relu\"\ninit = \"default\"\nbatchnorm = false\nregularization = \"none\"\noptimizer = { kind = \"sgd\", lr = 0.01, momentum = 0.9, weight_decay = 0.0 }\n\n[gradcheck]\nlayer = \"all\"\nsamples = 64\n",
        "14103559848d49d52806897251815f0d596b43fea3c7f3ecd7f977a3c0a986e2",
        [
            "trial",
            "synthetic:glyphs",
            "0.1",
            "10",
            "128",
            "1000",
            "0",
            "[256, 128]",
            "relu",
            "default",
            "false",
            "none",
            "{ kind = \"sgd\", lr = 0.01, momentum = 0.9, weight_decay = 0.0 }",
            "{ layer = \"all\", samples = 64 }",
        ],
    ),
    (
        FULL,
        "name = \"deep-sigmoid\"\ndataset = \"cifar10:/data/cifar-10-batches-bin\"\nval_fraction = 0.2\nepochs = 20\nbatch_size = 64\neval_batch_size = 500\nseed = 7\nhidden = [512, 256, 128]\nactivation = \"leaky_relu\"\ninit = \"he_normal\"\nbatchnorm = true\nregularization = \"l2:0.0001+dropout:0.2\"\noptimizer = { kind = \"adam\", lr = 0.0003, betas = [0.8, 0.99], eps = 1e-7, weight_decay = 1.0 }\n\n[gradcheck]\nlayer = \"linear2\"\nsamples = 16\n",
        "6fe7a050c1e1c02d28d4398f335751bcc83950e8e04c23c6fd96a65d71c13bde",
        [
            "deep-sigmoid",
            "cifar10:/data/cifar-10-batches-bin",
            "0.2",
            "20",
            "64",
            "500",
            "7",
            "[512, 256, 128]",
            "leaky_relu",
            "he_normal",
            "true",
            "l2:0.0001+dropout:0.2",
            "{ kind = \"adam\", lr = 0.0003, betas = [0.8, 0.99], eps = 1e-7, weight_decay = 1.0 }",
            "{ layer = \"linear2\", samples = 16 }",
        ],
    ),
    (
        ODD,
        "name = \"quote \\\" back\\\\slash ünï\"\ndataset = \"gurmukhi:data/gurmukhi digits\"\nval_fraction = 0.05\nepochs = 10\nbatch_size = 128\neval_batch_size = 1000\nseed = 0\nhidden = []\nactivation = \"relu\"\ninit = \"default\"\nbatchnorm = false\nregularization = \"l1:1e-5+l2:0.0001+dropout:0.5\"\noptimizer = { kind = \"sgd\", lr = 1.0, momentum = 0.0, weight_decay = 0.0005 }\n\n[gradcheck]\nlayer = \"none\"\nsamples = 1\n",
        "f4076f03f7c9b1a4cec6c2f9fabe1234c644568f0267177ee85f5c66b68fec9c",
        [
            "quote \" back\\slash ünï",
            "gurmukhi:data/gurmukhi digits",
            "0.05",
            "10",
            "128",
            "1000",
            "0",
            "[]",
            "relu",
            "default",
            "false",
            "l1:1e-5+l2:0.0001+dropout:0.5",
            "{ kind = \"sgd\", lr = 1.0, momentum = 0.0, weight_decay = 0.0005 }",
            "{ layer = \"none\", samples = 1 }",
        ],
    ),
];

#[test]
fn canonical_toml_labels_and_keys_are_pinned() {
    for (text, canonical, key, labels) in PINS {
        let c = TrialConfig::from_toml_str(text).unwrap();
        assert_eq!(c.to_toml_string(), canonical);
        assert_eq!(trial_key(canonical), key);
        for (k, label) in TRIAL_KEYS.iter().zip(labels) {
            assert_eq!(c.field_text(k).as_deref(), Some(label), "{k}");
        }
        // The canonical text reads back to the same config.
        assert_eq!(TrialConfig::from_toml_str(canonical).unwrap(), c);
    }
}

#[test]
fn example_sweep_keys_are_pinned() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sweeps/activations.toml"
    ))
    .unwrap();
    let spec = SweepSpec::from_toml_str(&text).unwrap();
    let trials = spec.expand(1000).unwrap();
    assert_eq!(trials.len(), 24);
    assert_eq!(
        trials[0].key,
        "f6bc0563ee1e0ac1422404741f2f1bdfdd81f9fe4222bf1f30a00e419ee2a3cb"
    );
    assert_eq!(
        trials[23].key,
        "0899e4559ea2f155b73fe09fe5ded456e190e80b33e1e9cd31e10d5d3d28314c"
    );
    let all: String = trials.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        trial_key(&all),
        "3f811fa4f05a5f526be92b570ad74c0a91de17c51c34500201fe53c333a9456c"
    );
    assert_eq!(
        spec.axes[0].labels,
        ["sigmoid", "tanh", "relu", "leaky_relu"]
    );
    assert_eq!(spec.axes[1].labels, ["false", "true"]);
}

const GRID: &str = r#"
name     = "cifar10-activations"
dataset  = "cifar10:/data/cifar-10-batches-bin"
val_fraction = 0.1
epochs   = 40
batch_size = 128
seeds    = [0, 1, 2]

[grid]
activation     = ["sigmoid", "tanh", "relu", "leaky_relu"]
init           = ["default", "xavier_uniform", "he_normal"]
batchnorm      = [false, true]
regularization = ["none", "l1:1e-5", "l2:1e-4", "dropout:0.2"]
hidden = [[], [64, 32]]
optimizer = [{ kind = "sgd" }, { kind = "adam", lr = 3e-4 }]
eval_batch_size = [100, 1000]

[gradcheck]
layer = "linear1"
"#;

#[test]
fn grid_sweep_keys_and_labels_are_pinned() {
    let spec = SweepSpec::from_toml_str(GRID).unwrap();
    let trials = spec.expand(100_000).unwrap();
    assert_eq!(trials.len(), 2304);
    assert_eq!(
        trials[0].key,
        "6e2c22f10e18644b0b21b0c6101bb2141a843727644bb4169ab61e8960873ea9"
    );
    assert_eq!(
        trials[2303].key,
        "c2e6f164fa9a0ad6c5ed3e9db1bff5e7f4cd107f37e5a3ebce236649a4db3ae3"
    );
    assert_eq!(
        trials[2303].toml,
        "name = \"cifar10-activations\"\ndataset = \"cifar10:/data/cifar-10-batches-bin\"\nval_fraction = 0.1\nepochs = 40\nbatch_size = 128\neval_batch_size = 1000\nseed = 2\nhidden = [64, 32]\nactivation = \"leaky_relu\"\ninit = \"he_normal\"\nbatchnorm = true\nregularization = \"dropout:0.2\"\noptimizer = { kind = \"adam\", lr = 0.0003, betas = [0.9, 0.999], eps = 1e-8, weight_decay = 0.0 }\n\n[gradcheck]\nlayer = \"linear1\"\nsamples = 64\n"
    );
    let all: String = trials.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        trial_key(&all),
        "94b964b9eaf0de0a396c10b89f54bb67d8a2cee393f5ff1674e8f994a9843f79"
    );
    let labels: Vec<String> = spec.axes.iter().map(|a| a.labels.join("|")).collect();
    assert_eq!(
        labels,
        [
            "100|1000",
            "[]|[64, 32]",
            "sigmoid|tanh|relu|leaky_relu",
            "default|xavier_uniform|he_normal",
            "false|true",
            "none|l1:1e-5|l2:0.0001|dropout:0.2",
            "{ kind = \"sgd\", lr = 0.01, momentum = 0.9, weight_decay = 0.0 }|{ kind = \"adam\", lr = 0.0003, betas = [0.9, 0.999], eps = 1e-8, weight_decay = 0.0 }",
        ]
    );
}
