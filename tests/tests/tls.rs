//! End to end over TLS with tokens: a coordinator with a certificate from a test CA
//! (made here with rcgen), a `worker serve` process and the `sweep` binary, all over
//! `https://` on loopback; and the one-line errors when one side speaks TLS and the
//! other does not, or the client does not trust the certificate.

use gradsweep_tests::{Pki, Proc, TempDir, binary, coordinator_with, worker_command};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = r#"
name = "tls"
dataset = "synthetic:glyphs-tiny"
epochs = 2
batch_size = 64
hidden = [16]
seeds = [0, 1]

[grid]
activation = ["relu", "tanh"]
"#;

/// `sweep <args>` (no token from the environment), waited for at most `limit`.
fn sweep(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(binary("sweep"))
        .args(args)
        .env_remove("GRADSWEEP_TOKEN")
        .env_remove("GRADSWEEP_COORDINATOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sweep starts");
    let started = Instant::now();
    while child.try_wait().expect("sweep's status").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("sweep {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("sweep's output")
}

/// The one line a failed `sweep` printed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("Status {"), "not tonic's Debug: {err}");
    err
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

#[test]
fn a_sweep_finishes_over_tls_with_tokens_and_mismatches_are_one_clear_line() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(&dir.0);
    let client_token = dir.0.join("client.token");
    let worker_token = dir.0.join("worker.token");
    std::fs::write(&client_token, "c-0f9d1e77\n").unwrap();
    std::fs::write(&worker_token, "w-82ab3c10\n").unwrap();
    let (_coord, addr) = coordinator_with(
        &dir.0.join("db"),
        "127.0.0.1:0",
        "30s",
        &[
            "--tls-cert",
            path(&pki.cert),
            "--tls-key",
            path(&pki.key),
            "--client-token-file",
            path(&client_token),
            "--worker-token-file",
            path(&worker_token),
        ],
    );
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    let worker_log = dir.0.join("worker.log");
    let _worker = Proc(
        worker_command(
            &url,
            "tls-worker",
            1,
            &["--ca", path(&pki.ca), "--token-file", path(&worker_token)],
        )
        .stderr(std::fs::File::create(&worker_log).unwrap())
        .spawn()
        .expect("worker starts"),
    );
    let spec = dir.0.join("tls.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let secure = ["--coordinator", &url, "--ca", path(&pki.ca)];
    let with_token = [&secure[..], &["--token-file", path(&client_token)]].concat();

    let out = sweep(
        &[&with_token[..], &["submit", path(&spec), "--watch"]].concat(),
        Duration::from_secs(600),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sweep(
        &[&with_token[..], &["ls"]].concat(),
        Duration::from_secs(60),
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains("tls"), "{listed}");
    assert!(listed.to_lowercase().contains("finished"), "{listed}");
    let log = std::fs::read_to_string(&worker_log).unwrap();
    // The worker logs each trial it starts and ends, with its config and outcome.
    assert!(log.contains("/0 started (tls activation=relu"), "{log}");
    assert!(log.contains("ended: completed after"), "{log}");

    // TLS but no token: the fix is named.
    let err = failure(&sweep(
        &[&secure[..], &["ls"]].concat(),
        Duration::from_secs(60),
    ));
    assert!(
        err.contains("--token-file") && err.contains("GRADSWEEP_TOKEN"),
        "{err}"
    );

    // Plaintext against the TLS server.
    let plain = format!("http://127.0.0.1:{port}");
    let err = failure(&sweep(
        &[
            "--coordinator",
            &plain,
            "--token-file",
            path(&client_token),
            "ls",
        ],
        Duration::from_secs(60),
    ));
    assert!(
        err.contains(&format!("use https://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("--ca"), "{err}");

    // The client does not trust the certificate: no --ca, then another CA.
    for ca in [None, Some(path(&pki.other_ca))] {
        let mut args = vec!["--coordinator", url.as_str()];
        if let Some(ca) = ca {
            args.extend(["--ca", ca]);
        }
        args.extend(["--token-file", path(&client_token), "ls"]);
        let err = failure(&sweep(&args, Duration::from_secs(60)));
        assert!(
            err.contains("not signed by a CA") && err.contains("--ca FILE"),
            "{err}"
        );
    }

    // A worker speaking plaintext to the TLS server (its address from
    // GRADSWEEP_COORDINATOR) stops at once with the fix.
    let mut plain_worker = Command::new(binary("worker"))
        .args(["serve", "--device", "cpu", "--threads", "1", "--token-file"])
        .arg(&worker_token)
        .env("GRADSWEEP_COORDINATOR", &plain)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts");
    let started = Instant::now();
    while plain_worker.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = plain_worker.kill();
            panic!("a plaintext worker kept retrying a TLS coordinator");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = plain_worker.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("use https://127.0.0.1:{port}")),
        "{err}"
    );

    // A worker without the worker token stops at once, naming how to send it.
    let out = worker_command(&url, "no-token", 1, &["--ca", path(&pki.ca)])
        .stderr(Stdio::piped())
        .output()
        .expect("worker runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--token-file FILE or GRADSWEEP_TOKEN") && err.contains("worker token"),
        "{err}"
    );
}

#[test]
fn tls_against_a_plaintext_coordinator_is_one_clear_line() {
    let dir = TempDir::new("tls-plain");
    let pki = Pki::new(&dir.0);
    let (_coord, addr) = coordinator_with(&dir.0.join("db"), "127.0.0.1:0", "30s", &[]);
    let url = format!("https://{addr}");
    let err = failure(&sweep(
        &["--coordinator", &url, "--ca", path(&pki.ca), "ls"],
        Duration::from_secs(60),
    ));
    assert!(err.contains("does not speak TLS"), "{err}");
    assert!(err.contains(&format!("use http://{addr}")), "{err}");
}

#[test]
fn the_demo_on_a_coordinator_with_tokens_gives_its_workers_the_worker_token() {
    let dir = TempDir::new("demo-tokens");
    let client_token = dir.0.join("client.token");
    let worker_token = dir.0.join("worker.token");
    std::fs::write(&client_token, "c-5e1a9b02\n").unwrap();
    std::fs::write(&worker_token, "w-7c44d0e9\n").unwrap();
    let (_coord, addr) = coordinator_with(
        &dir.0.join("db"),
        "127.0.0.1:0",
        "30s",
        &[
            "--client-token-file",
            path(&client_token),
            "--worker-token-file",
            path(&worker_token),
        ],
    );
    let demo = |extra: &[&str]| {
        let mut child = Command::new(binary("sweep"))
            .args([
                "--coordinator",
                &addr,
                "demo",
                "--workers",
                "1",
                "--device",
                "cpu",
            ])
            .args(["--epochs", "1", "--dataset", "synthetic:glyphs-tiny"])
            .args(extra)
            // `sweep` reads its client token here; the demo's workers must not take it.
            .env("GRADSWEEP_TOKEN", "c-5e1a9b02")
            .env_remove("GRADSWEEP_COORDINATOR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sweep starts");
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                panic!("sweep demo {extra:?} did not end: it waited for workers that were gone");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    // Without the worker token its workers are refused: one line that says so (with
    // the worker's own words), the demo's sweep cancelled, not a wait forever.
    let out = demo(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.contains("every local worker exited before sweep 1 finished (sweep 1 is cancelled)")
            && last.contains("worker token"),
        "{err}"
    );
    let with_token = ["--coordinator", &addr, "--token-file", path(&client_token)];
    let ls = sweep(
        &[&with_token[..], &["ls"]].concat(),
        Duration::from_secs(60),
    );
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("cancelled")),
        "{listed}"
    );

    // With it, the demo's sweep finishes.
    let out = demo(&["--worker-token-file", path(&worker_token)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vanishing_gradients"), "{text}");

    // The flag is for a --coordinator's workers; a missing file is named.
    let err = failure(&sweep(
        &["demo", "--worker-token-file", path(&worker_token)],
        Duration::from_secs(60),
    ));
    assert!(
        err.contains("--worker-token-file is for the local workers"),
        "{err}"
    );
    let err = failure(&sweep(
        &[
            &with_token[..],
            &["demo", "--worker-token-file", "/nonexistent/w.token"],
        ]
        .concat(),
        Duration::from_secs(60),
    ));
    assert!(
        err.contains("--worker-token-file /nonexistent/w.token: cannot read it"),
        "{err}"
    );
}
