//! Rendering: aligned text grids, and a `GetTable` answer as text, Markdown, CSV or JSON.
//! Numbers are never recomputed here; CSV and JSON carry them at full precision.

use gradsweep_proto::{MetricStat, Table, TableRow};

/// The output formats of `sweep table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal: `mean ± std (n)`.
    Table,
    /// A Markdown table.
    Md,
    /// CSV with `<metric>_mean`, `<metric>_std`, `<metric>_n` columns, full precision.
    Csv,
    /// JSON: `{sweep_id, axes, metrics, rows: [{values: {axis: label}, stats: {metric: {mean, std, count}}}]}`.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "md" | "markdown" => Ok(Format::Md),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("expected table, md, csv or json, got \"{s}\"")),
        }
    }
}

/// Left-aligned columns separated by two spaces, with a header line.
pub fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

pub(crate) fn cell(s: &MetricStat) -> String {
    if s.count == 0 {
        return "— (0)".into();
    }
    match s.std {
        Some(std) => format!("{:.4} ± {std:.4} ({})", s.mean, s.count),
        // One trial: no spread to show (a sample std needs two).
        None => format!("{:.4} ± — ({})", s.mean, s.count),
    }
}

/// The row's trials outside the stats, e.g. `1 diverged, 2 failed` (empty: none).
pub fn excluded(r: &gradsweep_proto::TableRow) -> String {
    [
        (r.diverged, "diverged"),
        (r.failed, "failed"),
        (r.cancelled, "cancelled"),
        (r.unfinished, "unfinished"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A std as CSV text: empty with fewer than two trials.
pub(crate) fn std_text(std: Option<f64>) -> String {
    std.map(|x| x.to_string()).unwrap_or_default()
}

pub(crate) fn json_opt(x: Option<f64>) -> serde_json::Value {
    x.map(json_number).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn json_number(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Renders `table` in `format`.
pub fn table(table: &Table, format: Format) -> String {
    table_with(table, format, false)
}

/// The verdict names any row of `table` reports, in the order first reported.
fn verdict_names(table: &Table) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in &table.rows {
        for v in &r.verdicts {
            if !names.contains(&v.name) {
                names.push(v.name.clone());
            }
        }
    }
    names
}

/// `name`'s (flagged, of) counts in row `r`.
fn verdict_count(r: &TableRow, name: &str) -> (u32, u32) {
    r.verdicts
        .iter()
        .find(|v| v.name == name)
        .map_or((0, 0), |v| (v.flagged, v.of))
}

/// Renders `table` in `format`; with `verdicts`, each verdict's count per row as well
/// (`flagged/of` finished trials; CSV `<verdict>_flagged`, `<verdict>_of`; JSON
/// `verdicts: {name: {flagged, of}}`).
pub fn table_with(table: &Table, format: Format, verdicts: bool) -> String {
    let mut header: Vec<String> = table.axes.clone();
    let names = if verdicts {
        verdict_names(table)
    } else {
        Vec::new()
    };
    match format {
        Format::Table | Format::Md => {
            header.extend(table.metrics.iter().cloned());
            header.extend(names.iter().cloned());
            // The column of trials in no stat, only when there are some.
            let any_excluded = table.rows.iter().any(|r| !excluded(r).is_empty());
            if any_excluded {
                header.push("not in stats".into());
            }
            let rows: Vec<Vec<String>> = table
                .rows
                .iter()
                .map(|r| {
                    let mut cells = r.values.clone();
                    cells.extend(r.stats.iter().map(cell));
                    cells.extend(names.iter().map(|n| {
                        let (flagged, of) = verdict_count(r, n);
                        format!("{flagged}/{of}")
                    }));
                    if any_excluded {
                        cells.push(excluded(r));
                    }
                    cells
                })
                .collect();
            if format == Format::Table {
                let h: Vec<&str> = header.iter().map(String::as_str).collect();
                grid(&h, &rows)
            } else {
                let mut out = format!("| {} |\n", header.join(" | "));
                out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
                for row in rows {
                    out.push_str(&format!("| {} |\n", row.join(" | ")));
                }
                out
            }
        }
        Format::Csv => {
            for m in &table.metrics {
                header.extend([format!("{m}_mean"), format!("{m}_std"), format!("{m}_n")]);
            }
            header.extend(["diverged", "failed", "cancelled", "unfinished"].map(String::from));
            for n in &names {
                header.extend([format!("{n}_flagged"), format!("{n}_of")]);
            }
            let mut out: String = header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
            for r in &table.rows {
                let mut cells: Vec<String> = r.values.iter().map(|v| csv_field(v)).collect();
                for s in &r.stats {
                    // `{}` prints the shortest text that parses back to the same f64.
                    cells.extend([s.mean.to_string(), std_text(s.std), s.count.to_string()]);
                }
                cells.extend(
                    [r.diverged, r.failed, r.cancelled, r.unfinished].map(|n| n.to_string()),
                );
                for n in &names {
                    let (flagged, of) = verdict_count(r, n);
                    cells.extend([flagged.to_string(), of.to_string()]);
                }
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = table
                .rows
                .iter()
                .map(|r| {
                    let values: serde_json::Map<String, serde_json::Value> = table
                        .axes
                        .iter()
                        .zip(&r.values)
                        .map(|(a, v)| (a.clone(), v.clone().into()))
                        .collect();
                    let stats: serde_json::Map<String, serde_json::Value> = r
                        .stats
                        .iter()
                        .map(|s| {
                            (
                                s.metric.clone(),
                                serde_json::json!({
                                    "mean": json_number(s.mean),
                                    "std": json_opt(s.std),
                                    "count": s.count,
                                }),
                            )
                        })
                        .collect();
                    let mut row = serde_json::json!({
                        "values": values,
                        "stats": stats,
                        "diverged": r.diverged,
                        "failed": r.failed,
                        "cancelled": r.cancelled,
                        "unfinished": r.unfinished,
                    });
                    if verdicts {
                        let counts: serde_json::Map<String, serde_json::Value> = names
                            .iter()
                            .map(|n| {
                                let (flagged, of) = verdict_count(r, n);
                                (n.clone(), serde_json::json!({"flagged": flagged, "of": of}))
                            })
                            .collect();
                        row["verdicts"] = counts.into();
                    }
                    row
                })
                .collect();
            let doc = serde_json::json!({
                "sweep_id": table.sweep_id,
                "axes": table.axes,
                "metrics": table.metrics,
                "rows": rows,
            });
            let mut out = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
            out.push('\n');
            out
        }
    }
}

/// Orders `table`'s rows by `metric`'s mean: highest first for accuracies, lowest first
/// for losses and the penalty; rows without a value last. `metric` must be one of the
/// table's metrics.
pub fn sort_rows(table: &mut Table, metric: &str) -> Result<(), String> {
    let i = table
        .metrics
        .iter()
        .position(|m| m == metric)
        .ok_or_else(|| {
            format!(
                "--sort: \"{metric}\" is not among the table's metrics ({})",
                table.metrics.join(", ")
            )
        })?;
    let descending = metric.ends_with("accuracy");
    let key = |r: &gradsweep_proto::TableRow| {
        let s = r.stats.get(i);
        match s {
            Some(s) if s.count > 0 && !s.mean.is_nan() => {
                Some(if descending { -s.mean } else { s.mean })
            }
            _ => None,
        }
    };
    // Stable: ties keep the coordinator's (spec) order.
    table.rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradsweep_proto::TableRow;

    fn row(label: &str, mean: f64, count: u32) -> TableRow {
        TableRow {
            verdicts: vec![],
            diverged: u32::from(count == 0),
            values: vec![label.into()],
            stats: vec![MetricStat {
                metric: "m".into(),
                mean,
                std: None,
                count,
            }],
            ..TableRow::default()
        }
    }

    fn table(metric: &str) -> Table {
        Table {
            sweep_id: 1,
            axes: vec!["a".into()],
            metrics: vec![metric.into()],
            rows: vec![
                row("x", 0.5, 2),
                row("empty", f64::NAN, 0),
                row("y", 0.9, 2),
                row("z", 0.1, 2),
            ],
        }
    }

    fn labels(t: &Table) -> Vec<&str> {
        t.rows.iter().map(|r| r.values[0].as_str()).collect()
    }

    #[test]
    fn accuracies_sort_high_first_losses_low_first_empty_rows_last() {
        let mut t = table("test_accuracy");
        sort_rows(&mut t, "test_accuracy").unwrap();
        assert_eq!(labels(&t), ["y", "x", "z", "empty"]);
        let mut t = table("test_loss");
        sort_rows(&mut t, "test_loss").unwrap();
        assert_eq!(labels(&t), ["z", "x", "y", "empty"]);
        assert!(
            sort_rows(&mut t, "val_loss")
                .unwrap_err()
                .contains("val_loss")
        );
    }

    #[test]
    fn csv_keeps_full_precision_and_quotes_commas() {
        let mut t = table("test_accuracy");
        t.rows[0].values[0] = "l2:1e-4+dropout:0.2,x".into();
        t.rows[0].stats[0].mean = 0.1 + 0.2;
        let csv = super::table(&t, Format::Csv);
        let line = csv.lines().nth(1).unwrap();
        assert!(
            line.starts_with("\"l2:1e-4+dropout:0.2,x\",0.30000000000000004,"),
            "{line}"
        );
        assert!(line.ends_with(",0,0,0,0"), "{line}");
        // A row with a diverged trial says so in the text table.
        let text = super::table(&t, Format::Table);
        assert!(
            text.contains("not in stats") && text.contains("1 diverged"),
            "{text}"
        );
    }

    #[test]
    fn verdict_counts_render_only_when_asked() {
        use gradsweep_proto::VerdictCount;
        let mut r = row("sigmoid", 0.1, 2);
        r.verdicts = vec![VerdictCount {
            name: "stagnant_loss".into(),
            flagged: 2,
            of: 2,
        }];
        let t = Table {
            sweep_id: 1,
            axes: vec!["activation".into()],
            metrics: vec!["m".into()],
            rows: vec![r],
        };
        assert!(!super::table(&t, Format::Table).contains("stagnant_loss"));
        let text = table_with(&t, Format::Table, true);
        assert!(
            text.lines().next().unwrap().ends_with("stagnant_loss"),
            "{text}"
        );
        assert!(text.lines().nth(1).unwrap().ends_with("2/2"), "{text}");
        let csv = table_with(&t, Format::Csv, true);
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with(",stagnant_loss_flagged,stagnant_loss_of")
        );
        assert!(csv.lines().nth(1).unwrap().ends_with(",2,2"), "{csv}");
        let json = table_with(&t, Format::Json, true);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["rows"][0]["verdicts"]["stagnant_loss"]["flagged"], 2);
        assert_eq!(
            super::table(&t, Format::Csv),
            table_with(&t, Format::Csv, false)
        );
    }
}
