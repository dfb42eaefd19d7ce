//! The deployment files (`deploy/`) and the README's shell examples, checked against the
//! binaries so that they cannot rot silently: every Kubernetes manifest parses as YAML;
//! every `coordinator`, `worker` and `sweep` command line in the manifests, the Slurm and
//! helper scripts, the systemd units, the Dockerfile and the README uses only flags that
//! binary's `--help` lists (for `worker serve`, `sweep <subcommand>`: that subcommand's);
//! the manifests hold together (probes on the port the coordinator listens on, the
//! database on the volume, the token files from the Secret the kustomization makes, a
//! GPU per worker); `make-secrets.sh` makes a certificate its CA verifies; and, where
//! `shellcheck` is installed, the scripts pass it.

use gradsweep_tests::{TempDir, binary};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The flags one binary (or subcommand) takes, as its `--help` lists them, and whether
/// each takes a value (`--db <DB>`).
#[derive(Debug, Default)]
struct Flags(BTreeMap<String, bool>);

/// `<binary> [subcommand] --help`, parsed; cached per (binary, subcommand).
struct Helps(BTreeMap<(String, String), Flags>);

impl Helps {
    fn new() -> Helps {
        Helps(BTreeMap::new())
    }

    fn get(&mut self, bin: &str, sub: &str) -> &Flags {
        self.0
            .entry((bin.to_owned(), sub.to_owned()))
            .or_insert_with(|| {
                let mut cmd = Command::new(binary(bin));
                if !sub.is_empty() {
                    cmd.arg(sub);
                }
                let out = cmd.arg("--help").output().expect("--help runs");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{bin} {sub} --help failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                parse_help(&text)
            })
    }
}

/// The `--flag` entries of a clap help text: a line whose first word is `-x, --flag` or
/// `--flag`, followed by `<VALUE>` when it takes one.
fn parse_help(text: &str) -> Flags {
    let mut flags = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = match line.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') => match rest.split_once(", ") {
                Some((_, long)) => long,
                None => continue,
            },
            _ => line,
        };
        let Some(rest) = line.strip_prefix("--") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let after = &rest[name.len()..];
        let takes_value =
            after.starts_with(" <") || after.starts_with("=<") || after.starts_with(" [<");
        flags.insert(name, takes_value);
    }
    Flags(flags)
}

/// One command line found in a file.
#[derive(Debug)]
struct Invocation {
    /// Where it was found (file and line).
    at: String,
    /// `coordinator`, `worker` or `sweep`.
    binary: String,
    /// Its arguments, up to the end of the command.
    args: Vec<String>,
}

const BINARIES: [&str; 3] = ["coordinator", "worker", "sweep"];

/// The binary a word in command position names, if it is one of ours: `coordinator`,
/// `$bin/coordinator`, `/usr/local/bin/worker`, `target/release/sweep`.
fn our_binary(word: &str) -> Option<&'static str> {
    let base = word.rsplit('/').next().unwrap_or(word);
    BINARIES.into_iter().find(|b| *b == base)
}

/// Whether the word after `prev` starts a command (`&& sweep`, `exec worker`,
/// `VAR=x sweep`).
fn command_position(prev: Option<&str>) -> bool {
    let Some(prev) = prev else { return true };
    let assignment = prev.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    assignment
        || matches!(
            prev,
            "exec" | "&&" | "||" | ";" | "|" | "do" | "then" | "else"
        )
}

/// Whether a shell word ends a command (`&`, `|`, `;`, a redirection).
fn ends_command(word: &str) -> bool {
    matches!(word, "&" | "&&" | "||" | "|" | ";" | "\\")
        || word.starts_with('>')
        || word.starts_with('<')
        || word
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with('>')
}

/// The command lines of our binaries in shell text (scripts, systemd's `ExecStart=`
/// values, README code blocks): continuation lines joined, comments dropped, then split
/// into words as the shell does.
fn shell_invocations(at: &str, first_line: usize, text: &str) -> Vec<Invocation> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = first_line;
    for (i, line) in text.lines().enumerate() {
        if logical.is_empty() {
            start = first_line + i;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let words = shlex::split(&logical).unwrap_or_else(|| {
            panic!(
                "{at}:{start}: cannot split into shell words: {:?}",
                logical.trim()
            )
        });
        for (j, word) in words.iter().enumerate() {
            let prev = j.checked_sub(1).map(|p| words[p].as_str());
            if command_position(prev)
                && let Some(bin) = our_binary(word)
            {
                let args = words[j + 1..]
                    .iter()
                    .take_while(|w| !ends_command(w))
                    .cloned()
                    .collect();
                out.push(Invocation {
                    at: format!("{at}:{start}"),
                    binary: bin.to_owned(),
                    args,
                });
            }
        }
        logical.clear();
    }
    out
}

/// Checks one command line's flags against the binary's `--help`: `worker` and `sweep`
/// by subcommand (a `sweep` flag given before the subcommand is a global one, listed in
/// both). Returns the problems, one line each.
fn check(inv: &Invocation, helps: &mut Helps) -> Vec<String> {
    let mut problems = Vec::new();
    let has_subcommands = inv.binary != "coordinator";
    let top: BTreeMap<String, bool> = helps.get(&inv.binary, "").0.clone();
    let mut sub = String::new();
    let mut i = 0;
    while i < inv.args.len() {
        let arg = &inv.args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, inline_value) = match flag.split_once('=') {
                Some((n, _)) => (n, true),
                None => (flag, false),
            };
            let known = if sub.is_empty() {
                top.clone()
            } else {
                helps.get(&inv.binary, &sub).0.clone()
            };
            match known.get(name) {
                None => {
                    let whose = if sub.is_empty() {
                        inv.binary.clone()
                    } else {
                        format!("{} {sub}", inv.binary)
                    };
                    problems.push(format!(
                        "{}: `{whose}` has no flag --{name} (see `{whose} --help`)",
                        inv.at
                    ));
                    // Whether it took a value is unknown: skip a word that is not a
                    // subcommand, so that one unknown flag is one problem.
                    if !inline_value
                        && let Some(next) = inv.args.get(i)
                        && !next.starts_with('-')
                        && !(has_subcommands
                            && sub.is_empty()
                            && subcommands(&inv.binary).contains(next))
                    {
                        i += 1;
                    }
                }
                Some(true) if !inline_value => i += 1,
                Some(_) => {}
            }
        } else if has_subcommands && sub.is_empty() && !arg.starts_with('-') {
            sub = arg.clone();
            let subs = subcommands(&inv.binary);
            if !subs.contains(&sub) {
                problems.push(format!(
                    "{}: `{}` has no subcommand {sub:?} (it has {subs:?})",
                    inv.at, inv.binary
                ));
                break;
            }
        }
    }
    if has_subcommands
        && sub.is_empty()
        && !inv.args.iter().any(|a| a == "--help" || a == "--version")
    {
        problems.push(format!("{}: `{}` without a subcommand", inv.at, inv.binary));
    }
    problems
}

/// The subcommands a binary's `--help` lists (the lines under `Commands:`).
fn subcommands(bin: &str) -> BTreeSet<String> {
    let out = Command::new(binary(bin)).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|s| s != "help")
        .collect()
}

/// The YAML documents of a file.
fn yaml_docs(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

/// Every container (a map with `image`) in a document, however deep.
fn containers<'a>(doc: &'a Yaml, out: &mut Vec<&'a Yaml>) {
    match doc {
        Yaml::Hash(h) => {
            let key = |k: &str| h.contains_key(&Yaml::String(k.to_owned()));
            if key("image") && key("name") {
                out.push(doc);
            }
            for v in h.values() {
                containers(v, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| containers(v, out)),
        _ => {}
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a
            .iter()
            .map(|v| match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(n) => n.to_string(),
                other => panic!("a command or argument that is not a string: {other:?}"),
            })
            .collect(),
        Yaml::BadValue => Vec::new(),
        other => panic!("command/args is not a list: {other:?}"),
    }
}

/// A container's `command` + `args`.
fn argv(container: &Yaml) -> Vec<String> {
    let mut v = strings(&container["command"]);
    v.extend(strings(&container["args"]));
    v
}

/// The value after `flag` in an argument list.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The Kubernetes manifests' command lines, and what holds them together.
fn kubernetes(dir: &Path, out: &mut Vec<Invocation>) {
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))[0];
    let mut docs = Vec::new();
    for r in kustomization["resources"]
        .as_vec()
        .expect("kustomization resources")
    {
        let file = r.as_str().expect("a resource path");
        for doc in yaml_docs(&dir.join(file)) {
            docs.push((file.to_owned(), doc));
        }
    }
    let listed: BTreeSet<PathBuf> = kustomization["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|r| dir.join(r.as_str().unwrap()))
        .collect();
    for f in files_under(dir) {
        if f.extension().is_some_and(|e| e == "yaml") && !f.ends_with("kustomization.yaml") {
            assert!(
                listed.contains(&f),
                "{} is not in kustomization.yaml's resources",
                f.display()
            );
        }
    }

    // The Secret the kustomization makes, and its keys.
    let generator = &kustomization["secretGenerator"][0];
    let secret = generator["name"]
        .as_str()
        .expect("secretGenerator name")
        .to_owned();
    let keys: BTreeSet<String> = generator["files"]
        .as_vec()
        .expect("secretGenerator files")
        .iter()
        .map(|f| f.as_str().unwrap().split('=').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["client.token".to_owned(), "worker.token".to_owned()]),
        "the Secret's keys are the files deploy/make-secrets.sh writes"
    );

    let mut seen = BTreeSet::new();
    for (file, doc) in &docs {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a document without kind"));
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        seen.insert(kind.to_owned());
        let mut cs = Vec::new();
        containers(doc, &mut cs);
        for c in cs {
            let argv = argv(c);
            let at = format!("deploy/k8s/{file} ({kind} {name})");
            let Some(bin) = argv.first().and_then(|a| our_binary(a)) else {
                panic!("{at}: a container that runs none of coordinator, worker, sweep: {argv:?}");
            };
            let env_names: BTreeSet<&str> = c["env"]
                .as_vec()
                .map(|v| v.iter().filter_map(|e| e["name"].as_str()).collect())
                .unwrap_or_default();
            // Secrets mounted as files: mount path → secret name.
            let mounts: BTreeMap<String, String> = c["volumeMounts"]
                .as_vec()
                .map(|v| {
                    v.iter()
                        .map(|m| {
                            (
                                m["name"].as_str().unwrap().to_owned(),
                                m["mountPath"].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let volumes = &doc["spec"]["template"]["spec"]["volumes"];
            let secret_dirs: BTreeSet<String> = volumes
                .as_vec()
                .map(|v| {
                    v.iter()
                        .filter(|vol| vol["secret"]["secretName"].as_str() == Some(secret.as_str()))
                        .filter_map(|vol| mounts.get(vol["name"].as_str().unwrap()).cloned())
                        .collect()
                })
                .unwrap_or_default();
            match bin {
                "coordinator" => {
                    assert_eq!(
                        kind, "StatefulSet",
                        "{at}: the coordinator runs as a StatefulSet"
                    );
                    assert_eq!(
                        doc["spec"]["replicas"].as_i64(),
                        Some(1),
                        "{at}: one coordinator per database"
                    );
                    let listen = flag_value(&argv, "--listen").expect("--listen");
                    let port: i64 = listen.rsplit(':').next().unwrap().parse().unwrap();
                    for probe in ["readinessProbe", "livenessProbe"] {
                        assert_eq!(
                            c[probe]["grpc"]["port"].as_i64(),
                            Some(port),
                            "{at}: {probe} is a gRPC probe on the port of --listen {listen}"
                        );
                    }
                    assert!(
                        c["ports"]
                            .as_vec()
                            .unwrap()
                            .iter()
                            .any(|p| p["containerPort"].as_i64() == Some(port)),
                        "{at}: containerPort {port}"
                    );
                    // The database on the claim template's volume.
                    let db = flag_value(&argv, "--db").expect("--db");
                    let claim = doc["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
                        .as_str()
                        .expect("a volumeClaimTemplate");
                    let mount = mounts
                        .get(claim)
                        .unwrap_or_else(|| panic!("{at}: {claim} is not mounted"));
                    assert!(
                        db.starts_with(&format!("{mount}/")),
                        "{at}: --db {db} is not on the volume at {mount}"
                    );
                    // The token files come from the Secret.
                    for (flag, key) in [
                        ("--client-token-file", "client.token"),
                        ("--worker-token-file", "worker.token"),
                    ] {
                        let path =
                            flag_value(&argv, flag).unwrap_or_else(|| panic!("{at}: no {flag}"));
                        assert!(
                            secret_dirs.iter().any(|d| path == format!("{d}/{key}")),
                            "{at}: {flag} {path} is not the Secret {secret}'s {key} (mounted at {secret_dirs:?})"
                        );
                    }
                }
                "worker" => {
                    assert_eq!(kind, "Deployment", "{at}: workers run as a Deployment");
                    for (what, r) in [
                        ("requests", &c["resources"]["requests"]),
                        ("limits", &c["resources"]["limits"]),
                    ] {
                        assert_eq!(
                            r["nvidia.com/gpu"].as_i64(),
                            Some(1),
                            "{at}: a worker {what} nvidia.com/gpu: 1"
                        );
                    }
                    assert!(
                        env_names.contains("GRADSWEEP_COORDINATOR")
                            && env_names.contains("GRADSWEEP_TOKEN"),
                        "{at}: GRADSWEEP_COORDINATOR and GRADSWEEP_TOKEN in env, found {env_names:?}"
                    );
                    let token = c["env"]
                        .as_vec()
                        .unwrap()
                        .iter()
                        .find(|e| e["name"].as_str() == Some("GRADSWEEP_TOKEN"))
                        .unwrap();
                    let r = &token["valueFrom"]["secretKeyRef"];
                    assert_eq!(r["name"].as_str(), Some(secret.as_str()), "{at}");
                    assert_eq!(r["key"].as_str(), Some("worker.token"), "{at}");
                    let address = c["env"]
                        .as_vec()
                        .unwrap()
                        .iter()
                        .find(|e| e["name"].as_str() == Some("GRADSWEEP_COORDINATOR"))
                        .and_then(|e| e["value"].as_str())
                        .expect("GRADSWEEP_COORDINATOR's value");
                    let service = docs
                        .iter()
                        .find(|(_, d)| d["kind"].as_str() == Some("Service"))
                        .map(|(_, d)| d)
                        .expect("a Service");
                    let port = service["spec"]["ports"][0]["port"].as_i64().unwrap();
                    assert_eq!(
                        address,
                        format!(
                            "http://{}:{port}",
                            service["metadata"]["name"].as_str().unwrap()
                        ),
                        "{at}: GRADSWEEP_COORDINATOR names the Service"
                    );
                }
                _ => {}
            }
            out.push(Invocation {
                at,
                binary: bin.to_owned(),
                args: argv[1..].to_vec(),
            });
        }
    }
    for kind in ["Service", "StatefulSet", "Deployment"] {
        assert!(seen.contains(kind), "no {kind} among the manifests");
    }
}

/// Lines with their continuations (`\` at the end) joined, each with its first line's
/// number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut joined = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if joined.is_empty() {
            start = i + 1;
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        out.push((start, std::mem::take(&mut joined)));
    }
    out
}

/// systemd units: every `Exec*=` line.
fn systemd(path: &Path, rel: &str, out: &mut Vec<Invocation>) {
    let exec: Vec<(usize, String)> = logical_lines(&read(path))
        .into_iter()
        .filter_map(|(line, text)| {
            let (key, value) = text.split_once('=')?;
            key.starts_with("Exec").then(|| (line, value.to_owned()))
        })
        .collect();
    assert!(!exec.is_empty(), "{rel}: no ExecStart=");
    for (line, value) in exec {
        out.extend(shell_invocations(rel, line, &value));
    }
}

/// A Dockerfile: each stage's ENTRYPOINT + CMD (JSON arrays), and its RUN lines.
fn dockerfile(path: &Path, rel: &str, out: &mut Vec<Invocation>) {
    let mut stage: Option<(usize, Vec<String>, Vec<String>)> = None;
    let mut stages = Vec::new();
    for (n, line) in logical_lines(&read(path)) {
        let i = n - 1;
        let line = line.trim();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word.to_ascii_uppercase().as_str() {
            "FROM" => {
                stages.extend(stage.take());
                stage = Some((i + 1, Vec::new(), Vec::new()));
            }
            "ENTRYPOINT" | "CMD" => {
                let v: Vec<String> = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{rel}:{}: {word} is not a JSON array: {e}", i + 1));
                let s = stage.as_mut().expect("an instruction before FROM");
                if word.eq_ignore_ascii_case("ENTRYPOINT") {
                    s.1 = v;
                } else {
                    s.2 = v;
                }
            }
            "RUN" => out.extend(shell_invocations(rel, i + 1, rest)),
            _ => {}
        }
    }
    stages.extend(stage.take());
    let mut entrypoints = 0;
    for (line, entrypoint, cmd) in stages {
        let mut argv = entrypoint;
        argv.extend(cmd);
        if let Some(bin) = argv.first().and_then(|a| our_binary(a)) {
            entrypoints += 1;
            out.push(Invocation {
                at: format!("{rel}:{line} (the stage's ENTRYPOINT + CMD)"),
                binary: bin.to_owned(),
                args: argv[1..].to_vec(),
            });
        }
    }
    assert!(
        entrypoints >= 2,
        "{rel}: a coordinator stage and a worker stage"
    );
}

/// The README's shell code blocks.
fn readme(out: &mut Vec<Invocation>) {
    let text = read(&repo().join("README.md"));
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut block {
            None if line.trim_start() == "```sh" || line.trim_start() == "```bash" => {
                block = Some((i + 2, String::new()))
            }
            Some((start, body)) if line.trim_start() == "```" => {
                out.extend(shell_invocations("README.md", *start, body));
                block = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
}

/// Every command line in `deploy/` (and the README's examples) uses only flags that the
/// binaries' `--help` lists; the manifests parse and hold together.
#[test]
fn every_command_line_in_the_deployment_files_exists_in_the_binaries() {
    let deploy = repo().join("deploy");
    let mut found = Vec::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for path in files_under(&deploy) {
        let rel = path.strip_prefix(repo()).unwrap().display().to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = if name.ends_with(".yaml") || name.ends_with(".yml") {
            // All of deploy/k8s at once, through its kustomization, below.
            assert!(
                rel.starts_with("deploy/k8s/"),
                "{rel}: YAML outside deploy/k8s"
            );
            "yaml"
        } else if name.ends_with(".sh") || name.ends_with(".sbatch") {
            found.extend(shell_invocations(&rel, 1, &read(&path)));
            "shell"
        } else if name.ends_with(".service") {
            systemd(&path, &rel, &mut found);
            "systemd"
        } else if name == "Dockerfile" {
            dockerfile(&path, &rel, &mut found);
            "dockerfile"
        } else if name.ends_with(".dockerignore")
            || name == ".gitignore"
            || name.ends_with(".example")
        {
            "other"
        } else if rel.starts_with("deploy/k8s/secrets/") {
            // Made by make-secrets.sh, ignored by git.
            continue;
        } else {
            panic!("{rel}: a deployment file this test does not know how to check; teach it");
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kubernetes(&deploy.join("k8s"), &mut found);
    readme(&mut found);
    eprintln!("checked files: {kinds:?}");

    for bin in BINARIES {
        assert!(
            found.iter().any(|inv| inv.binary == bin),
            "no `{bin}` command line found: the extraction is broken"
        );
    }
    let mut helps = Helps::new();
    let mut problems = Vec::new();
    for inv in &found {
        problems.extend(check(inv, &mut helps));
    }
    eprintln!("{} command lines checked", found.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself finds a flag that does not exist, a subcommand that does not
/// exist, and a flag given to the wrong subcommand.
#[test]
fn the_checker_finds_flags_that_do_not_exist() {
    let mut helps = Helps::new();
    let text = "target/release/coordinator --listen 0.0.0.0:7070 --no-such-flag x &\n\
                exec \"$bin/worker\" serve --db x \\\n  --slots 2\n\
                sweep --coordinator http://h:7070 frobnicate 3\n\
                sweep status 1 --coordinator=http://h:7070 # comment --bogus\n";
    let found = shell_invocations("t.sh", 1, text);
    assert_eq!(found.len(), 4, "{found:?}");
    let problems: Vec<String> = found.iter().flat_map(|i| check(i, &mut helps)).collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("t.sh:1: `coordinator` has no flag --no-such-flag"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("t.sh:2: `worker serve` has no flag --db"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains("t.sh:4: `sweep` has no subcommand \"frobnicate\""),
        "{}",
        problems[2]
    );
}

/// `deploy/make-secrets.sh` makes two tokens, a CA and a coordinator certificate that
/// the CA verifies, naming the host names and addresses given; run again, it keeps the
/// tokens and the CA.
#[test]
fn make_secrets_makes_a_certificate_its_ca_verifies() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let dir = TempDir::new("deploy-secrets");
    let out = dir.0.join("s");
    let script = repo().join("deploy/make-secrets.sh");
    let run = |names: &[&str]| {
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .args(names)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["coord.lab.example", "10.231.1.1"]);
    let token = read(&out.join("client.token"));
    assert_eq!(token.trim().len(), 64, "{token:?}");
    assert_ne!(token, read(&out.join("worker.token")));
    let ca = read(&out.join("ca.pem"));
    let text = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(out.join("coordinator.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:coord.lab.example"), "{text}");
    assert!(text.contains("IP Address:10.231.1.1"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let verify = |cert: &str| {
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(out.join("ca.pem"))
            .arg(out.join(cert))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(verify("coordinator.pem"));
    run(&["other.lab.example"]);
    assert_eq!(read(&out.join("client.token")), token);
    assert_eq!(read(&out.join("ca.pem")), ca);
    assert!(verify("coordinator.pem"));
    // Without names it says how to call it.
    let o = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("usage:"));
}

/// The shell scripts pass `shellcheck` (where it is installed: `apt-get install
/// shellcheck`).
#[test]
fn the_scripts_pass_shellcheck() {
    let scripts: Vec<PathBuf> = files_under(&repo().join("deploy"))
        .into_iter()
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".sh") || n.ends_with(".sbatch")
        })
        .collect();
    assert!(scripts.len() >= 3, "{scripts:?}");
    let out = match Command::new("shellcheck").args(&scripts).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: shellcheck is not installed ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
