//! `worker` with a stdout whose reader is gone (`worker train t.toml | head -1`): it
//! ends quietly (SIGPIPE's default), never with a panic and a backtrace.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[test]
fn a_closed_stdout_ends_worker_train_quietly() {
    let dir = std::env::temp_dir().join(format!("gradsweep-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trial = dir.join("t.toml");
    std::fs::write(
        &trial,
        "dataset = \"synthetic:glyphs-tiny\"\nepochs = 1\nhidden = [8]\n[gradcheck]\nlayer = \"none\"\n",
    )
    .unwrap();
    for args in [
        vec!["train", trial.to_str().unwrap(), "--device", "cpu"],
        vec![
            "train",
            trial.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
        ],
        vec!["--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(&args)
            .env("GRADSWEEP_THREADS", "1")
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "worker {args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "worker {args:?}: {:?} {err}",
            out.status
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `worker serve` keeps SIGPIPE ignored: a write to a connection the coordinator reset
/// (it was killed) must be an error the worker retries, not a signal that kills it.
#[test]
fn worker_serve_survives_sigpipe() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        // Nothing listens there: the worker keeps retrying its registration.
        .args([
            "serve",
            "--coordinator",
            "http://127.0.0.1:9",
            "--device",
            "cpu",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGPIPE);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(alive, "worker serve died of SIGPIPE: {status:?}");
}
