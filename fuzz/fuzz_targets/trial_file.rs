//! The trial-file parser on arbitrary text: it must answer (never panic, abort, hang
//! or allocate without bound), every error must be one line, and an accepted trial's
//! canonical TOML must read back to the same trial and the same text.
#![no_main]

use gradsweep_spec::TrialConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TrialConfig::from_toml_str(text) {
        Ok(config) => {
            let canonical = config.to_toml_string();
            let again = TrialConfig::from_toml_str(&canonical)
                .unwrap_or_else(|e| panic!("canonical text refused: {e}\n{canonical}"));
            assert_eq!(again, config, "{canonical}");
            assert_eq!(again.to_toml_string(), canonical);
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "multi-line error: {line:?}");
        }
    }
});
