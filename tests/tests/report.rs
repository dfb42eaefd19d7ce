//! `sweep report` against real processes: a small sweep (activation × regularisation,
//! with a gradient check) is reported; the page has every section, says which axes the
//! sweep did not vary, its tables equal `sweep table`'s, its inline SVG parses, it
//! fetches nothing, and Debian's headless Chromium renders it without a console error
//! (skipped, saying why, where Chromium is missing; GRADSWEEP_REQUIRE_CHROMIUM=1 makes
//! that a failure).

use gradsweep_tests::{TempDir, binary, coordinator, submit, sweeps_client, wait_finished, worker};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = r#"
name = "report-e2e <&>"
dataset = "synthetic:glyphs-tiny"
epochs = 3
batch_size = 32
hidden = [32, 32, 32]
optimizer = { kind = "sgd", lr = 0.05, momentum = 0.9 }
seeds = [0, 1]
[grid]
activation = ["sigmoid", "relu"]
regularization = ["none", "l2:1e-4"]
[gradcheck]
layer = "linear1"
samples = 4
"#;

const SECTIONS: [&str; 7] = [
    "overview",
    "activations",
    "vanishing",
    "remedies",
    "regularisers",
    "gradcheck",
    "provenance",
];

fn sweep(addr: &str, args: &[&str]) -> Output {
    Command::new(binary("sweep"))
        .arg("--coordinator")
        .arg(addr)
        .args(args)
        .env_remove("GRADSWEEP_TOKEN")
        .output()
        .expect("sweep runs")
}

fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text between every `open`…`close` pair, in order.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// `sweep table --format md`'s cells: the header, then each row.
fn md_cells(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| !l.starts_with("|---"))
        .map(|l| {
            l.strip_prefix("| ")
                .and_then(|l| l.strip_suffix(" |"))
                .unwrap_or_else(|| panic!("not a Markdown row: {l}"))
                .split(" | ")
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// An HTML table's cells (the report writes one row per `<tr>`).
fn html_cells(table: &str) -> Vec<Vec<String>> {
    between(table, "<tr>", "</tr>")
        .into_iter()
        .map(|row| {
            let mut cells: Vec<String> = between(row, "<th>", "</th>")
                .into_iter()
                .map(unescape)
                .collect();
            cells.extend(between(row, "<td>", "</td>").into_iter().map(unescape));
            cells
        })
        .collect()
}

fn finished_sweep(addr: &str) -> (u64, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut sweeps = sweeps_client(&format!("http://{addr}"), None, None);
        let s = submit(&mut sweeps, SPEC).await;
        let done = wait_finished(&mut sweeps, s.id, Duration::from_secs(300)).await;
        (s.id, done.dataset_fingerprint)
    })
}

#[test]
fn the_report_walks_the_study_and_its_tables_are_sweep_tables() {
    let tmp = TempDir::new("report");
    let (_coordinator, addr) = coordinator(&tmp.0.join("db"), "127.0.0.1:0", "10s");
    let _worker = worker(&addr, "report-w", 2);
    let (id, fingerprint) = finished_sweep(&addr);
    let id = id.to_string();
    let path = tmp.0.join("report.html");
    let o = sweep(&addr, &["report", &id, "--out", path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let html = std::fs::read_to_string(&path).unwrap();

    for s in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{s}\">")),
            "no section {s}"
        );
    }
    // Axes the sweep did not vary say so instead of vanishing.
    for axis in ["batchnorm", "init"] {
        let remedy = between(&html, &format!("<div id=\"remedy-{axis}\">"), "</div>");
        assert!(
            remedy[0].contains(&format!("The sweep did not vary {axis}: every trial used")),
            "{axis}: {}",
            remedy[0]
        );
    }
    // Verdicts beside their figures, the gradient check per layer, the provenance.
    assert!(html.contains("verdict <code>stagnant_loss</code>"));
    assert!(html.contains("verdict <code>vanishing_gradients</code>"));
    let check = between(&html, "<table id=\"gradcheck-table\">", "</table>");
    assert_eq!(check.len(), 1, "no gradient-check table");
    let rows = html_cells(check[0]);
    // 4 configurations × (initial, trained) × linear1.
    assert_eq!(rows.len(), 1 + 4 * 2, "{rows:?}");
    assert!(rows[1..].iter().all(|r| r[3] == "linear1"), "{rows:?}");
    assert!(!fingerprint.is_empty());
    assert!(html.contains(&fingerprint), "no dataset fingerprint");
    assert!(html.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))));
    // Text is escaped: the sweep's name holds `<&>`.
    assert!(html.contains("report-e2e &lt;&amp;&gt;"));
    assert!(!html.contains("report-e2e <&>"));
    // Self-contained: no script, no stylesheet link, nothing fetched.
    for bad in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(bad), "the report holds {bad}");
    }
    let no_svg_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!no_svg_ns.contains("http://") && !no_svg_ns.contains("https://"));
    // Every inline figure is well-formed SVG.
    let svgs = between(&html, "<svg ", "</svg>");
    assert!(svgs.len() >= 7, "{} figures", svgs.len());
    for s in &svgs {
        roxmltree::Document::parse(&format!("<svg {s}</svg>")).expect("inline SVG parses");
    }

    // Every table equals `sweep table`'s with the arguments it names.
    let mut tables = 0;
    for attr in between(&html, "<table data-sweep-table=\"", "</table>") {
        let (args, body) = attr.split_once("\">").unwrap();
        let args = unescape(args);
        let mut argv = vec!["table", id.as_str()];
        argv.extend(args.split_whitespace());
        let o = sweep(&addr, &argv);
        assert!(o.status.success(), "sweep {argv:?}: {o:?}");
        let md = String::from_utf8(o.stdout).unwrap();
        assert_eq!(html_cells(body), md_cells(&md), "sweep {argv:?}");
        tables += 1;
    }
    // Overview, activations, two remedies (activation; the others not varied), regularisers.
    assert_eq!(tables, 4, "tables in the report");

    // An existing file is untouched by a failed report; bad input is one line.
    std::fs::write(&path, "old").unwrap();
    let err = one_line_error(&sweep(
        &addr,
        &["report", "99", "--out", path.to_str().unwrap()],
    ));
    assert!(err.contains("99"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    let err = one_line_error(&sweep(
        &addr,
        &["report", &id, "--out", "/nonexistent-gradsweep/r.html"],
    ));
    assert!(err.contains("/nonexistent-gradsweep/r.html"), "{err}");
    let err = one_line_error(&sweep(
        &addr,
        &["report", &id, "--out", tmp.0.to_str().unwrap()],
    ));
    assert!(err.contains("is a directory"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Rewrite the real report for the browser.
    let o = sweep(&addr, &["report", &id, "--out", path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    chromium_renders(&path, &tmp.0);
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Opens `page` in headless Chromium, screenshots it; returns Chromium's stderr.
fn screenshot(chromium: &Path, page: &Path, shot: &Path, profile: &Path) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1400,2400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = reader.join().unwrap();
    assert!(status.success(), "chromium: {status}\n{err}");
    err
}

/// Chromium logs a page's console messages (errors, uncaught exceptions) as
/// `…:CONSOLE…] "message", source: …` on stderr with --enable-logging=stderr.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("CONSOLE")).collect()
}

fn chromium_renders(page: &Path, tmp: &Path) {
    let Some(chromium) = find_chromium() else {
        let why = "skipped: Chromium is not installed (apt-get install chromium)";
        assert!(
            std::env::var("GRADSWEEP_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "{why}, and GRADSWEEP_REQUIRE_CHROMIUM=1"
        );
        println!("{why}");
        return;
    };
    // The check itself: a page with a console error and an uncaught exception is caught.
    let bad = tmp.join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); \
         nosuchfunction();</script></body></html>",
    )
    .unwrap();
    let err = screenshot(&chromium, &bad, &tmp.join("bad.png"), &tmp.join("profile"));
    assert!(
        console_lines(&err).len() >= 2,
        "the console check misses a page's errors:\n{err}"
    );

    let shot = tmp.join("report.png");
    let err = screenshot(&chromium, page, &shot, &tmp.join("profile"));
    let console = console_lines(&err);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let bytes = std::fs::read(&shot).expect("a screenshot");
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1400, 2400));
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        inked > 20_000,
        "the screenshot is nearly blank ({inked} pixels)"
    );
    println!(
        "chromium ({}) rendered the report without console messages",
        chromium.display()
    );
}

/// `sweep demo --keep DIR --report FILE`: the database stays, with the commands that
/// open it again, and the report is written; with `--coordinator` it uses that one.
#[test]
fn the_demo_keeps_its_database_writes_its_report_and_honours_coordinator() {
    let tmp = TempDir::new("report-demo");
    let keep = tmp.0.join("kept");
    let page = tmp.0.join("demo.html");
    let o = Command::new(binary("sweep"))
        .args(["demo", "--workers", "1", "--device", "cpu", "--epochs", "2"])
        .args(["--dataset", "synthetic:glyphs-tiny"])
        .arg("--keep")
        .arg(&keep)
        .arg("--report")
        .arg(&page)
        .env_remove("GRADSWEEP_COORDINATOR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .next()
            .unwrap()
            .starts_with("demo: starting its own coordinator"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let db = std::fs::canonicalize(&keep).unwrap().join("db");
    assert!(db.is_dir(), "the kept database is gone");
    assert!(
        out.contains(&format!(" --db {} --listen 127.0.0.1:7070 &", db.display())),
        "{out}"
    );
    assert!(out.contains("table 1 --verdicts"), "{out}");
    // The verdict grid: vanishing gradients with the stagnant loss beside it.
    assert!(out.contains("VANISHING_GRADIENTS  STAGNANT_LOSS"), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    for s in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{s}\">")),
            "no section {s}"
        );
    }
    // The kept database opens again and answers for the sweep.
    let (_coordinator, addr) = coordinator(&db, "127.0.0.1:0", "10s");
    let o = sweep(&addr, &["table", "1", "--verdicts"]);
    assert!(o.status.success(), "{o:?}");

    // With --coordinator: no coordinator of its own, the sweep lands on that one.
    let _worker = worker(&addr, "demo-w", 2);
    let o = Command::new(binary("sweep"))
        .args([
            "--coordinator",
            &addr,
            "demo",
            "--workers",
            "0",
            "--epochs",
            "1",
        ])
        .args(["--dataset", "synthetic:glyphs-tiny"])
        .env_remove("GRADSWEEP_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .next()
            .unwrap()
            .starts_with(&format!("demo: using the coordinator at {addr}")),
        "{err}"
    );
    let ls = String::from_utf8_lossy(&sweep(&addr, &["ls"]).stdout).into_owned();
    assert!(ls.lines().any(|l| l.starts_with("2 ")), "{ls}");
    let err = one_line_error(
        &Command::new(binary("sweep"))
            .args(["--coordinator", &addr, "demo", "--keep"])
            .arg(&keep)
            .output()
            .unwrap(),
    );
    assert!(err.contains("--keep"), "{err}");
}
