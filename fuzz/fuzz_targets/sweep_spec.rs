//! The sweep-spec parser and the grid expansion on arbitrary text, as the coordinator
//! runs them on `SubmitSweep`: they must answer (never panic, abort, hang or allocate
//! without bound), every error must be one line, every expanded trial's canonical TOML
//! must read back to that trial, and the size computed before expanding must be the
//! size expanded.
#![no_main]

use gradsweep_spec::{DEFAULT_MAX_TRIALS, SweepSpec, TrialConfig, trial_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SweepSpec::from_toml_str(text).and_then(|spec| {
        let trials = spec.expand(DEFAULT_MAX_TRIALS)?;
        assert_eq!(trials.len() as u64, spec.trial_count());
        // The size checked before expanding is the size expanded.
        let bytes: usize = trials.iter().map(|t| t.toml.len()).sum();
        assert_eq!(spec.expanded_bytes(), bytes as u64);
        Ok(trials)
    }) {
        Ok(trials) => {
            for t in trials.iter().take(16) {
                assert_eq!(t.key, trial_key(&t.toml));
                let again = TrialConfig::from_toml_str(&t.toml)
                    .unwrap_or_else(|e| panic!("canonical text refused: {e}\n{}", t.toml));
                assert_eq!(again, t.config, "{}", t.toml);
            }
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "multi-line error: {line:?}");
        }
    }
});
