//! `sweep plot` against real processes: a coordinator and a worker train small sweeps
//! (one with diverged trials, one that varies no axis), then every figure kind is
//! rendered as SVG (parsed as XML) and as PNG (decoded), and bad input is one line.

use gradsweep_tests::{TempDir, binary, coordinator, submit, sweeps_client, wait_finished, worker};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// activation × optimizer, two seeds: ReLU at lr 1000 diverges, the rest finish.
const DIVERGING: &str = r#"
name = "plot-e2e"
dataset = "synthetic:glyphs-tiny"
epochs = 3
batch_size = 32
hidden = [32, 32, 32]
seeds = [0, 1]
[grid]
activation = ["sigmoid", "relu"]
optimizer = [{ kind = "sgd", lr = 0.05, momentum = 0.9 }, { kind = "sgd", lr = 1000.0 }]
[gradcheck]
layer = "none"
"#;

/// No grid: one configuration, two seeds.
const NO_AXES: &str = r#"
name = "plot-one"
dataset = "synthetic:glyphs-tiny"
epochs = 2
hidden = [16, 16]
seeds = [0, 1]
[gradcheck]
layer = "none"
"#;

const KINDS: [&str; 5] = [
    "1-loss",
    "2-weight-stats",
    "3-gradient-norms",
    "4-weight-change",
    "5-accuracy",
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

/// A failure's stderr: exit 1 and one line, no panic.
fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Parses an SVG file; returns its width and height.
fn svg_size(path: &Path) -> (u32, u32, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{}", path.display());
    let dim = |a: &str| root.attribute(a).unwrap().parse::<u32>().unwrap();
    (dim("width"), dim("height"), text)
}

/// Every figure in `dir` as SVG, checked; returns each one's text.
fn check_svgs(dir: &Path) -> Vec<String> {
    KINDS
        .iter()
        .map(|k| {
            let (w, h, text) = svg_size(&dir.join(format!("{k}.svg")));
            assert!(
                (600..6000).contains(&w) && (300..8000).contains(&h),
                "{k}: {w}×{h}"
            );
            // Drawn, not empty: lines and labelled axes.
            assert!(text.matches("<polyline").count() + text.matches("<line").count() > 10);
            assert!(text.contains("epoch") || text.contains("accuracy"), "{k}");
            text
        })
        .collect()
}

fn finished_sweep(addr: &str, spec: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut sweeps = sweeps_client(&format!("http://{addr}"), None, None);
        let s = submit(&mut sweeps, spec).await;
        wait_finished(&mut sweeps, s.id, Duration::from_secs(300)).await;
        s.id
    })
}

#[test]
fn every_figure_renders_as_svg_and_png_and_diverged_trials_are_marked() {
    let tmp = TempDir::new("plot");
    let (_coordinator, addr) = coordinator(&tmp.0.join("db"), "127.0.0.1:0", "10s");
    let _worker = worker(&addr, "plot-w", 2);
    let id = finished_sweep(&addr, DIVERGING).to_string();

    let svg_dir = tmp.0.join("svg");
    let o = sweep(&addr, &["plot", &id, "--out", svg_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("8 trials in 4 configurations"), "{out}");
    let svgs = check_svgs(&svg_dir);
    // ReLU at lr 1000 diverged in both seeds: marked in the legend with its count, and
    // the × explained; the default facets are the activations.
    let loss = &svgs[0];
    assert!(
        loss.contains("diverged ×)"),
        "no diverged configuration in the legend"
    );
    assert!(loss.contains("diverged trial (last finite epoch)"));
    assert!(loss.contains("activation=relu") && loss.contains("activation=sigmoid"));
    assert!(svgs[2].contains("linear1") && svgs[2].contains("linear4"));
    // Nothing else was left in the directory (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(&svg_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = KINDS.iter().map(|k| format!("{k}.svg")).collect();
    assert_eq!(names, expected);

    // PNG: decoded, the SVG's size, and not blank.
    let png_dir = tmp.0.join("png");
    let o = sweep(
        &addr,
        &[
            "plot",
            &id,
            "--out",
            png_dir.to_str().unwrap(),
            "--format",
            "png",
            "--by",
            "optimizer",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    for k in KINDS {
        let bytes = std::fs::read(png_dir.join(format!("{k}.png"))).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{k}");
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        assert!(
            (600..6000).contains(&w) && (300..8000).contains(&h),
            "{k}: {w}×{h}"
        );
        if k != "1-loss" {
            // The same layout as the SVG (the loss figure's facets differ here).
            let (sw, sh, _) = svg_size(&svg_dir.join(format!("{k}.svg")));
            assert_eq!((w, h), (sw, sh), "{k}");
        }
        let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked * 100 > (w * h) as usize, "{k}: nearly blank");
        let coloured = img
            .pixels()
            .filter(|p| {
                let [r, g, b] = p.0;
                r.abs_diff(g) > 40 || g.abs_diff(b) > 40
            })
            .count();
        assert!(coloured > 100, "{k}: no coloured series");
    }

    // Bad input: one line naming it, exit 1, nothing written.
    let bad = tmp.0.join("bad");
    let err = one_line_error(&sweep(
        &addr,
        &[
            "plot",
            &id,
            "--out",
            bad.to_str().unwrap(),
            "--by",
            "colour",
        ],
    ));
    assert!(
        err.contains("--by colour") && err.contains("activation, optimizer"),
        "{err}"
    );
    assert!(!bad.exists(), "a refused --by created the output directory");
    let err = one_line_error(&sweep(
        &addr,
        &["plot", "99", "--out", bad.to_str().unwrap()],
    ));
    assert!(err.contains("99"), "{err}");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("figs");
    let err = one_line_error(&sweep(
        &addr,
        &["plot", &id, "--out", under_file.to_str().unwrap()],
    ));
    assert!(err.contains("--out") && err.contains("a-file"), "{err}");
}

#[test]
fn a_sweep_that_varies_no_axis_still_plots() {
    let tmp = TempDir::new("plot-one");
    let (_coordinator, addr) = coordinator(&tmp.0.join("db"), "127.0.0.1:0", "10s");
    let _worker = worker(&addr, "plot-one-w", 2);
    let id = finished_sweep(&addr, NO_AXES).to_string();
    let dir = tmp.0.join("figs");
    let o = sweep(&addr, &["plot", &id, "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 trials in 1 configuration ("), "{out}");
    let svgs = check_svgs(&dir);
    assert!(svgs[0].contains("all trials"));
    assert!(svgs[4].contains("regularisation not varied"));
    let err = one_line_error(&sweep(
        &addr,
        &[
            "plot",
            &id,
            "--out",
            dir.to_str().unwrap(),
            "--by",
            "activation",
        ],
    ));
    assert!(err.contains("varies no axis"), "{err}");
}
