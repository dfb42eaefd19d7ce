//! `sweep table --effects`: each axis's effect on one metric, as the coordinator
//! computes it (`GetEffects`, every axis in one pass over the sweep's trials), rendered
//! as a table, Markdown, CSV or JSON. Nothing is recomputed here.
//!
//! Per axis: its values best first (mean ± std (n) over the value's SUCCEEDED trials,
//! every other axis and the seeds pooled; the std is "—" in text and null in JSON under
//! two trials), each value's diverged/failed/cancelled/unfinished trials, the spread
//! (best mean − worst mean) and the lost fraction (the share of the worst value's ended
//! trials that diverged or failed). Axes come ranked: the highest lost fraction first,
//! then the largest spread.

use crate::render::{Format, cell, csv_field, grid, json_number, json_opt, std_text};
use crate::{Client, Result, metric_name};
use gradsweep_proto::{AxisEffect, EffectValue, Effects, GetEffectsRequest, MetricStat};

/// Asks the coordinator for the effects of `id`'s axes on `metric` (a name or an
/// abbreviation such as `test_acc`).
pub async fn effects(
    client: &mut Client,
    id: u64,
    metric: &str,
    best_val_epoch: bool,
) -> Result<Effects> {
    client
        .sweeps
        .get_effects(GetEffectsRequest {
            sweep_id: id,
            metric: metric_name(metric),
            best_val_epoch,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| client.status(s))
}

fn stat(v: &EffectValue) -> MetricStat {
    v.stat.clone().unwrap_or_default()
}

/// A value's trials outside its stat, e.g. `2 diverged, 1 failed` (empty: none).
fn outside(v: &EffectValue) -> String {
    [
        (v.diverged, "diverged"),
        (v.failed, "failed"),
        (v.cancelled, "cancelled"),
        (v.unfinished, "unfinished"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

fn axis_line(a: &AxisEffect) -> String {
    let spread = a
        .spread
        .map_or_else(|| "spread —".to_owned(), |s| format!("spread {s:.4}"));
    if a.lost_fraction > 0.0 {
        format!(
            "{spread}, {:.0}% lost under its worst value",
            a.lost_fraction * 100.0
        )
    } else {
        spread
    }
}

/// Renders a `GetEffects` answer in `format`.
pub fn render(effects: &Effects, format: Format) -> String {
    let metric = &effects.metric;
    match format {
        Format::Table | Format::Md => {
            let mut out = format!(
                "effect of each axis on {metric} ({} is better; each value: mean ± std (n) \
                 over its succeeded trials, all other axes and the seeds pooled), axes \
                 with diverged or failed trials first, then the largest spread\n",
                if effects.higher_is_better {
                    "higher"
                } else {
                    "lower"
                }
            );
            let mut rows = Vec::new();
            for a in &effects.axes {
                rows.push(vec![
                    a.key.clone(),
                    String::new(),
                    axis_line(a),
                    String::new(),
                ]);
                for v in &a.values {
                    rows.push(vec![
                        String::new(),
                        v.label.clone(),
                        cell(&stat(v)),
                        outside(v),
                    ]);
                }
            }
            if format == Format::Md {
                let mut md = out;
                md.push_str(
                    "\n| axis | value | mean ± std (n) | not counted |\n|---|---|---|---|\n",
                );
                for r in rows {
                    md.push_str(&format!(
                        "| {} |\n",
                        r.iter()
                            .map(|c| c.replace('|', "\\|"))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ));
                }
                return md;
            }
            out.push_str(&grid(
                &["AXIS", "VALUE", "MEAN ± STD (N) / SPREAD", "NOT COUNTED"],
                &rows,
            ));
            out
        }
        Format::Csv => {
            let mut out = format!(
                "axis,spread,lost_fraction,value,{metric}_mean,{metric}_std,{metric}_n,\
                 diverged,failed,cancelled,unfinished\n"
            );
            for a in &effects.axes {
                for v in &a.values {
                    let s = stat(v);
                    out.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},{}\n",
                        csv_field(&a.key),
                        std_text(a.spread),
                        a.lost_fraction,
                        csv_field(&v.label),
                        s.mean,
                        std_text(s.std),
                        s.count,
                        v.diverged,
                        v.failed,
                        v.cancelled,
                        v.unfinished
                    ));
                }
            }
            out
        }
        Format::Json => {
            let axes: Vec<serde_json::Value> = effects
                .axes
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "axis": a.key,
                        "spread": json_opt(a.spread),
                        "lost_fraction": json_number(a.lost_fraction),
                        "values": a.values.iter().map(|v| {
                            let s = stat(v);
                            serde_json::json!({
                                "value": v.label,
                                "mean": json_number(s.mean),
                                "std": json_opt(s.std),
                                "count": s.count,
                                "diverged": v.diverged,
                                "failed": v.failed,
                                "cancelled": v.cancelled,
                                "unfinished": v.unfinished,
                            })
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "sweep_id": effects.sweep_id,
                "metric": metric,
                "higher_is_better": effects.higher_is_better,
                "axes": axes,
            });
            let mut out = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
            out.push('\n');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects() -> Effects {
        let value =
            |label: &str, mean: f64, std: Option<f64>, count: u32, diverged: u32| EffectValue {
                label: label.into(),
                stat: Some(MetricStat {
                    metric: "test_loss".into(),
                    mean,
                    std,
                    count,
                }),
                diverged,
                ..EffectValue::default()
            };
        Effects {
            sweep_id: 4,
            metric: "test_loss".into(),
            higher_is_better: false,
            axes: vec![
                AxisEffect {
                    key: "lr".into(),
                    values: vec![
                        value("0.1", 0.5, None, 1, 0),
                        value("10", f64::NAN, None, 0, 2),
                    ],
                    spread: None,
                    lost_fraction: 1.0,
                },
                AxisEffect {
                    key: "activation".into(),
                    values: vec![
                        value("relu", 0.25, Some(0.01), 2, 1),
                        value("tanh", 0.75, Some(0.02), 2, 1),
                    ],
                    spread: Some(0.5),
                    lost_fraction: 1.0 / 3.0,
                },
            ],
        }
    }

    #[test]
    fn text_shows_missing_stds_as_dashes_and_the_lost_trials() {
        let text = render(&effects(), Format::Table);
        assert!(text.starts_with("effect of each axis on test_loss (lower is better"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("AXIS"), "{text}");
        assert!(lines[2].starts_with("lr"), "{text}");
        assert!(lines[2].contains("spread —, 100% lost"), "{text}");
        assert!(lines[3].contains("0.5000 ± — (1)"), "{text}");
        assert!(
            lines[4].contains("— (0)") && lines[4].ends_with("2 diverged"),
            "{text}"
        );
        assert!(lines[5].starts_with("activation") && lines[5].contains("spread 0.5000"));
        let md = render(&effects(), Format::Md);
        assert!(
            md.contains("| lr |  | spread —, 100% lost under its worst value |  |"),
            "{md}"
        );
    }

    #[test]
    fn json_has_null_stds_and_every_count() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&effects(), Format::Json)).unwrap();
        assert_eq!(json["metric"], "test_loss");
        assert_eq!(json["higher_is_better"], false);
        assert_eq!(json["axes"][0]["axis"], "lr");
        assert!(json["axes"][0]["spread"].is_null());
        assert_eq!(json["axes"][0]["lost_fraction"], 1.0);
        assert!(json["axes"][0]["values"][0]["std"].is_null());
        assert!(json["axes"][0]["values"][1]["mean"].is_null());
        assert_eq!(json["axes"][0]["values"][1]["diverged"], 2);
        assert_eq!(json["axes"][1]["values"][0]["std"], 0.01);
    }

    #[test]
    fn csv_has_one_line_per_value_with_empty_missing_stds() {
        let csv = render(&effects(), Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "axis,spread,lost_fraction,value,test_loss_mean,test_loss_std,test_loss_n,diverged,failed,cancelled,unfinished"
        );
        assert_eq!(lines[1], "lr,,1,0.1,0.5,,1,0,0,0,0");
        assert_eq!(lines[2], "lr,,1,10,NaN,,0,2,0,0,0");
        assert_eq!(lines.len(), 5);
    }
}
