//! The dataset a trial names, `"<kind>:<source>"`, checked as far as it can be without
//! the data: a known kind, a built-in name for `synthetic:`, a directory for the others.
//! Whether the directory holds the data is for the worker to find out when it loads it.

/// The dataset kinds, as written before the colon.
pub const KINDS: [&str; 3] = ["synthetic", "cifar10", "gurmukhi"];

/// The built-in datasets, as written after `synthetic:` (the worker generates them).
pub const BUILT_IN: [&str; 3] = ["glyphs", "glyphs-small", "glyphs-tiny"];

/// What a dataset string looks like, for messages.
const SHAPE: &str = "\"<kind>:<source>\" (synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>)";

/// Checks a dataset string; the error is a reason without a path:
/// `unknown dataset kind "imagenet" in "imagenet:/data"; expected one of synthetic,
/// cifar10, gurmukhi`.
pub fn check(s: &str) -> Result<(), String> {
    let Some((kind, source)) = s.split_once(':') else {
        return Err(format!("expected {SHAPE}, got \"{s}\""));
    };
    if kind.is_empty() {
        return Err(format!("expected {SHAPE}, got \"{s}\""));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters (line breaks, tabs)".to_owned());
    }
    match kind {
        "synthetic" if BUILT_IN.contains(&source) => Ok(()),
        "synthetic" => Err(format!(
            "no built-in dataset \"{source}\" in \"{s}\"; expected one of {}",
            BUILT_IN.map(|n| format!("synthetic:{n}")).join(", ")
        )),
        "cifar10" | "gurmukhi" if source.is_empty() => Err(format!(
            "no directory after \"{kind}:\"; expected {kind}:<dir>"
        )),
        "cifar10" | "gurmukhi" => Ok(()),
        _ => Err(format!(
            "unknown dataset kind \"{kind}\" in \"{s}\"; expected one of {}",
            KINDS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_datasets_pass() {
        for name in BUILT_IN {
            assert_eq!(check(&format!("synthetic:{name}")), Ok(()));
        }
        assert_eq!(check("cifar10:/data/cifar-10-batches-bin"), Ok(()));
        assert_eq!(check("gurmukhi:data/gurmukhi digits"), Ok(()));
        // A directory may itself contain colons.
        assert_eq!(check("gurmukhi:c:/data"), Ok(()));
        // Every kind has a branch.
        for kind in KINDS {
            assert!(!check(&format!("{kind}:")).unwrap_err().contains("unknown"));
        }
    }

    #[test]
    fn bad_datasets_are_refused_with_what_is_known() {
        assert_eq!(
            check("imagenet:/data").unwrap_err(),
            "unknown dataset kind \"imagenet\" in \"imagenet:/data\"; expected one of synthetic, cifar10, gurmukhi"
        );
        assert_eq!(
            check("synthetic:nope").unwrap_err(),
            "no built-in dataset \"nope\" in \"synthetic:nope\"; expected one of synthetic:glyphs, synthetic:glyphs-small, synthetic:glyphs-tiny"
        );
        assert_eq!(
            check("synthetic:").unwrap_err(),
            "no built-in dataset \"\" in \"synthetic:\"; expected one of synthetic:glyphs, synthetic:glyphs-small, synthetic:glyphs-tiny"
        );
        assert_eq!(
            check("gurmukhi:").unwrap_err(),
            "no directory after \"gurmukhi:\"; expected gurmukhi:<dir>"
        );
        assert_eq!(
            check("cifar10:").unwrap_err(),
            "no directory after \"cifar10:\"; expected cifar10:<dir>"
        );
        let shape =
            "expected \"<kind>:<source>\" (synthetic:<name>, cifar10:<dir> or gurmukhi:<dir>)";
        assert_eq!(
            check("glyphs").unwrap_err(),
            format!("{shape}, got \"glyphs\"")
        );
        assert_eq!(
            check(":glyphs").unwrap_err(),
            format!("{shape}, got \":glyphs\"")
        );
        assert_eq!(
            check("gurmukhi:/data\nx").unwrap_err(),
            "must not contain control characters (line breaks, tabs)"
        );
        // Kinds are case-sensitive, as the worker reads them.
        assert!(
            check("CIFAR10:/d")
                .unwrap_err()
                .starts_with("unknown dataset kind")
        );
    }
}
