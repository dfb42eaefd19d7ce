//! The harness of the end-to-end tests in `tests/tests/`: they start the real binaries
//! built by the workspace (`coordinator`, `worker`, `sweep`) as child processes, on
//! loopback ports chosen by the OS, and kill whatever they started when they end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A binary built beside the running test executable (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo test --release --workspace builds every binary)",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves none behind.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM (the process shuts down on its own).
    pub fn terminate(&mut self) {
        // SAFETY: sending a signal to our own child's pid has no memory-safety
        // preconditions.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh, empty temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/gradsweep-e2e-<tag>-<pid>`, emptied and created.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("gradsweep-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a coordinator on `listen` with database `db` and lease TTL `ttl` (at most 3
/// attempts a trial), and waits for its `listening on <addr>` line; returns it and the
/// address it listens on.
pub fn coordinator(db: &Path, listen: &str, ttl: &str) -> (Proc, String) {
    let mut child = Command::new(binary("coordinator"))
        .args([
            "--listen",
            listen,
            "--lease-ttl",
            ttl,
            "--max-attempts",
            "3",
        ])
        .arg("--db")
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("coordinator starts");
    let stdout = child.stdout.take().expect("coordinator stdout");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("coordinator's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (proc, addr)
}

/// A `worker serve` named `name` with `slots` slots, on `GRADSWEEP_E2E_DEVICE` (default
/// `cpu`, so that the tests run anywhere; `cuda:0` on a GPU machine).
pub fn worker(addr: &str, name: &str, slots: usize) -> Proc {
    let device = std::env::var("GRADSWEEP_E2E_DEVICE").unwrap_or_else(|_| "cpu".into());
    Proc(
        Command::new(binary("worker"))
            .args(["serve", "--device", &device, "--threads", "2"])
            .args(["--slots", &slots.to_string(), "--name", name])
            .arg("--coordinator")
            .arg(format!("http://{addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("worker starts"),
    )
}
