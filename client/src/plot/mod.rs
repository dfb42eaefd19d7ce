//! `sweep plot`: a finished (or running) sweep's figures, streamed from `ExportTrials`
//! and aggregated per configuration as they arrive ([`aggregate`]), drawn by
//! [`figures`] as SVG or PNG (text through the embedded font: no system font library).
//! Every figure is rendered in memory first, then written to a temporary file beside
//! its final name and renamed, so a failure leaves nothing half-written.

pub mod aggregate;
pub mod figures;

use crate::{CliError, Client, Result};
use aggregate::Study;
use figures::{Kind, Plan};
use gradsweep_proto::{ExportTrialsRequest, Sweep, TrialState};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The image formats of `sweep plot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// SVG text (text as `<text>` elements).
    Svg,
    /// PNG (RGB, text rasterised with the embedded font).
    Png,
}

impl ImageFormat {
    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            ImageFormat::Svg => "svg",
            ImageFormat::Png => "png",
        }
    }
}

impl std::str::FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<ImageFormat, String> {
        match s {
            "svg" => Ok(ImageFormat::Svg),
            "png" => Ok(ImageFormat::Png),
            _ => Err(format!("expected svg or png, got \"{s}\"")),
        }
    }
}

/// Streams the sweep's finished trials (succeeded and diverged, with every epoch's
/// layer diagnostics) into per-configuration aggregates; no trial is kept.
pub async fn collect(client: &mut Client, sweep: &Sweep) -> Result<Study> {
    let mut study = Study::new(sweep.axes.iter().map(|a| a.key.clone()).collect());
    let mut stream = client
        .sweeps
        .export_trials(ExportTrialsRequest {
            sweep_id: sweep.id,
            states: vec![TrialState::Succeeded as i32, TrialState::Diverged as i32],
            filters: vec![],
            layers: true,
        })
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(t)) => study.add(&t),
            Ok(None) => break,
            Err(s) => return Err(client.status(s)),
        }
    }
    Ok(study)
}

/// The facet axes: `by` checked against the sweep's axes (one line naming a wrong one),
/// else `activation` when the sweep varies it, else its first axis, else none.
pub fn facet_axes(sweep: &Sweep, by: &[String]) -> Result<Vec<usize>> {
    let keys: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
    if by.is_empty() {
        return Ok(keys
            .iter()
            .position(|k| *k == "activation")
            .or((!keys.is_empty()).then_some(0))
            .into_iter()
            .collect());
    }
    let mut out = Vec::new();
    for b in by {
        let b = b.trim();
        match keys.iter().position(|k| *k == b) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None if keys.is_empty() => {
                return Err(CliError(format!(
                    "--by {b}: sweep {} varies no axis (one configuration), so there is \
                     nothing to facet by; leave --by out",
                    sweep.id
                )));
            }
            None => {
                return Err(CliError(format!(
                    "--by {b}: not an axis of sweep {} (its axes: {})",
                    sweep.id,
                    keys.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// `sweep 3 "demo"`.
pub fn sweep_name(sweep: &Sweep) -> String {
    format!("sweep {} \"{}\"", sweep.id, sweep.name)
}

/// `kind` as SVG text.
pub fn svg(kind: Kind, plan: &Plan) -> Result<String> {
    let (w, h) = figures::size(kind, plan);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        figures::draw(kind, plan, &root).map_err(|e| draw_error(kind, e))?;
        root.present()
            .map_err(|e| draw_error(kind, e.to_string()))?;
    }
    Ok(out)
}

/// `kind` as a PNG file's bytes.
pub fn png(kind: Kind, plan: &Plan) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let (w, h) = figures::size(kind, plan);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        figures::draw(kind, plan, &root).map_err(|e| draw_error(kind, e))?;
        root.present()
            .map_err(|e| draw_error(kind, e.to_string()))?;
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| CliError(format!("cannot encode {}.png: {e}", kind.stem())))?;
    Ok(out)
}

fn draw_error(kind: Kind, e: String) -> CliError {
    CliError(format!("cannot draw {}: {e}", kind.stem()))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename: `path` is either the whole file or untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError(format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

/// Creates `dir` (and its parents) and checks that a file can be written there, before
/// any work.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError(format!("--out {}: cannot create it: {e}", dir.display())))?;
    let probe = dir.join(format!(".sweep-plot-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| CliError(format!("--out {}: cannot write there: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `sweep plot`: the five figures of sweep `id` into `out`; returns the lines to print
/// (each file with its size).
pub async fn plot(
    client: &mut Client,
    id: u64,
    out: &Path,
    by: &[String],
    format: ImageFormat,
) -> Result<String> {
    let sweep = crate::get_sweep(client, id).await?;
    let by = facet_axes(&sweep, by)?;
    prepare_dir(out)?;
    let study = collect(client, &sweep).await?;
    let plan = Plan {
        study: &study,
        by,
        name: sweep_name(&sweep),
    };
    // Everything is drawn before anything is written.
    let mut files = Vec::new();
    for kind in Kind::ALL {
        let bytes = match format {
            ImageFormat::Svg => svg(kind, &plan)?.into_bytes(),
            ImageFormat::Png => png(kind, &plan)?,
        };
        files.push((out.join(format!("{}.{}", kind.stem(), format.ext())), bytes));
    }
    let mut lines = String::new();
    for (path, bytes) in &files {
        write_atomic(path, bytes)?;
        lines.push_str(&format!(
            "wrote {} ({} bytes)\n",
            path.display(),
            bytes.len()
        ));
    }
    let c = sweep.counts.unwrap_or_default();
    let left_out = c.failed + c.cancelled + c.pending + c.leased;
    lines.push_str(&format!(
        "{} trials in {} configuration{} ({} diverged){}\n",
        study.trials,
        study.configs.len(),
        if study.configs.len() == 1 { "" } else { "s" },
        c.diverged,
        if left_out > 0 {
            format!("; {left_out} failed, cancelled or unfinished trials are in no figure")
        } else {
            String::new()
        }
    ));
    Ok(lines)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gradsweep_proto::{EpochReport, LayerDiagnostics, TrialExport, TrialSummary};

    /// A study like a small sweep's: activation × regularization, two seeds, four layers,
    /// sigmoid's first layer vanishing, one relu trial diverged at epoch 4.
    pub(crate) fn study() -> Study {
        let axes = vec!["activation".to_string(), "regularization".to_string()];
        let mut study = Study::new(axes);
        let mut index = 0;
        for act in ["sigmoid", "relu"] {
            for reg in ["none", "l2:1e-4"] {
                for seed in 0..2u64 {
                    let diverged = act == "relu" && reg == "none" && seed == 1;
                    let sig = act == "sigmoid";
                    let epochs: Vec<EpochReport> = (1..=if diverged { 3 } else { 6 })
                        .map(|n| {
                            let f = f64::from(n);
                            let s = seed as f64 * 0.05;
                            EpochReport {
                                epoch: n,
                                train_loss: if sig { 2.30 - 0.001 * f } else { 2.3 / f + s },
                                val_loss: if sig { 2.31 } else { 2.3 / f + 0.1 + s },
                                train_accuracy: if sig { 0.1 } else { 0.5 + 0.07 * f },
                                test_accuracy: if sig { 0.1 } else { 0.45 + 0.05 * f + s },
                                layers: (1..=4)
                                    .map(|l| LayerDiagnostics {
                                        layer: format!("linear{l}"),
                                        weight_mean: 1e-3 * f64::from(l) - s * 1e-3,
                                        weight_std: 0.05 + 0.01 * f * if sig { 0.01 } else { 1.0 },
                                        grad_norm: if sig {
                                            10f64.powi(l - 8)
                                        } else {
                                            0.1 * f64::from(l)
                                        },
                                        update_ratio: if sig {
                                            1e-5 * f64::from(l)
                                        } else {
                                            1e-2 / f
                                        },
                                        change_since_start: if sig {
                                            1e-5 * f * f64::from(l)
                                        } else {
                                            0.05 * f
                                        },
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            }
                        })
                        .collect();
                    study.add(&TrialExport {
                        summary: Some(TrialSummary {
                            index,
                            seed,
                            values: vec![act.into(), reg.into()],
                            state: if diverged {
                                TrialState::Diverged
                            } else {
                                TrialState::Succeeded
                            } as i32,
                            diverged_epoch: if diverged { 4 } else { 0 },
                            flagged: if sig {
                                vec!["stagnant_loss".into(), "vanishing_gradients".into()]
                            } else {
                                vec![]
                            },
                            ..Default::default()
                        }),
                        epochs,
                    });
                    index += 1;
                }
            }
        }
        study
    }

    #[test]
    fn every_figure_renders_as_svg_and_png() {
        let study = study();
        for (by, configs) in [(vec![0], 4), (vec![], 4), (vec![0, 1], 4)] {
            let plan = Plan {
                study: &study,
                by,
                name: "sweep 1 \"unit\"".into(),
            };
            assert_eq!(plan.study.configs.len(), configs);
            for kind in Kind::ALL {
                let svg = svg(kind, &plan).unwrap();
                let doc = roxmltree::Document::parse(&svg).unwrap();
                assert_eq!(doc.root_element().tag_name().name(), "svg");
                assert!(svg.contains("diverged"), "{kind:?}");
                let png = png(kind, &plan).unwrap();
                let img = image::load_from_memory(&png).unwrap();
                assert_eq!((img.width(), img.height()), figures::size(kind, &plan));
                assert!(img.width() >= 600 && img.height() >= 300, "{kind:?}");
                if let Ok(dir) = std::env::var("GRADSWEEP_PLOT_DUMP") {
                    let _ = std::fs::write(format!("{dir}/{}.png", kind.stem()), &png);
                    let _ = std::fs::write(format!("{dir}/{}.svg", kind.stem()), &svg);
                }
            }
        }
    }

    #[test]
    fn a_sweep_without_axes_is_one_configuration() {
        let mut study = Study::new(vec![]);
        study.add(&TrialExport {
            summary: Some(TrialSummary {
                state: TrialState::Succeeded as i32,
                ..Default::default()
            }),
            epochs: vec![EpochReport {
                epoch: 1,
                train_loss: 1.0,
                val_loss: 1.1,
                test_accuracy: 0.5,
                ..Default::default()
            }],
        });
        let plan = Plan {
            study: &study,
            by: vec![],
            name: "sweep 2 \"one\"".into(),
        };
        for kind in Kind::ALL {
            roxmltree::Document::parse(&svg(kind, &plan).unwrap()).unwrap();
            png(kind, &plan).unwrap();
        }
        // And with nothing finished at all.
        let empty = Study::new(vec!["activation".into()]);
        let plan = Plan {
            study: &empty,
            by: vec![0],
            name: "sweep 3 \"empty\"".into(),
        };
        for kind in Kind::ALL {
            roxmltree::Document::parse(&svg(kind, &plan).unwrap()).unwrap();
        }
    }

    #[test]
    fn facet_axes_default_to_activation_and_refuse_unknown_ones() {
        let axis = |k: &str| gradsweep_proto::Axis {
            key: k.into(),
            labels: vec![],
        };
        let sweep = Sweep {
            id: 4,
            axes: vec![axis("init"), axis("activation")],
            ..Default::default()
        };
        assert_eq!(facet_axes(&sweep, &[]).unwrap(), [1]);
        assert_eq!(facet_axes(&sweep, &["init".into()]).unwrap(), [0]);
        assert_eq!(
            facet_axes(&sweep, &["lr".into()]).unwrap_err().0,
            "--by lr: not an axis of sweep 4 (its axes: init, activation)"
        );
        let none = Sweep::default();
        assert!(facet_axes(&none, &[]).unwrap().is_empty());
        assert!(facet_axes(&none, &["seed".into()]).is_err());
    }
}
