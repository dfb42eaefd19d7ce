//! `sweep report`: one self-contained HTML page (inline SVG figures, inline CSS, no
//! script, nothing fetched) that walks a sweep's study: activations compared, vanishing
//! gradients detected three ways with each verdict beside its figure, the remedies side
//! by side, the regularisers' train/test gap, the gradient check per layer, and the
//! spec, dataset fingerprint and software version. Its tables are `GetTable`'s, rendered
//! by [`crate::render`] as `sweep table --format md` renders them, then as HTML; each
//! carries the `sweep table` arguments that print it (`data-sweep-table`).

use crate::plot::aggregate::{Config, Study};
use crate::plot::figures::{Kind, Plan};
use crate::{CliError, Client, Result, render};
use gradsweep_proto::{GetTrialRequest, GradCheck, Sweep, TrialDetail, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// HTML-escapes text (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The cells of a `render::table_with(.., Format::Md, ..)` answer: header and rows.
/// `None` when a cell holds ` | ` so that the split is ambiguous.
pub fn md_cells(md: &str) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let split = |line: &str| -> Option<Vec<String>> {
        let inner = line.strip_prefix("| ")?.strip_suffix(" |")?;
        Some(inner.split(" | ").map(str::to_owned).collect())
    };
    let mut lines = md.lines();
    let header = split(lines.next()?)?;
    lines.next()?; // |---|---|
    let mut rows = Vec::new();
    for line in lines {
        let row = split(line)?;
        if row.len() != header.len() {
            return None;
        }
        rows.push(row);
    }
    Some((header, rows))
}

/// A `GetTable` answer as an HTML table with the cells `sweep table --format md` prints
/// (a `<pre>` of the text table when a cell would be ambiguous).
fn html_table(table: &gradsweep_proto::Table, verdicts: bool, args: &str) -> String {
    let md = render::table_with(table, render::Format::Md, verdicts);
    let mut out = String::new();
    match md_cells(&md) {
        Some((header, rows)) => {
            let _ = write!(out, "<table data-sweep-table=\"{}\"><thead><tr>", esc(args));
            for h in &header {
                let _ = write!(out, "<th>{}</th>", esc(h));
            }
            out.push_str("</tr></thead><tbody>");
            for row in &rows {
                out.push_str("<tr>");
                for c in row {
                    let _ = write!(out, "<td>{}</td>", esc(c));
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table>");
        }
        None => {
            let text = render::table_with(table, render::Format::Table, verdicts);
            let _ = write!(
                out,
                "<pre class=\"table\" data-sweep-table=\"{}\">{}</pre>",
                esc(args),
                esc(&text)
            );
        }
    }
    let _ = write!(
        out,
        "<p class=\"cmd\">The same table: <code>sweep table {}{}</code></p>",
        table.sweep_id,
        esc(&if args.is_empty() {
            String::new()
        } else {
            format!(" {args}")
        })
    );
    out
}

/// A table from the coordinator, rendered, with the arguments that print it.
async fn table(
    client: &mut Client,
    id: u64,
    by: &[&str],
    metrics: &[&str],
    verdicts: bool,
) -> Result<String> {
    let t = crate::table(
        client,
        id,
        by.iter().map(|s| s.to_string()).collect(),
        metrics.iter().map(|s| s.to_string()).collect(),
        false,
    )
    .await?;
    let mut args = Vec::new();
    if !by.is_empty() {
        args.push(format!("--by {}", by.join(",")));
    }
    if !metrics.is_empty() {
        args.push(format!("--metric {}", metrics.join(",")));
    }
    if verdicts {
        args.push("--verdicts".into());
    }
    args.push("--format md".into());
    Ok(html_table(&t, verdicts, &args.join(" ")))
}

/// The value of `key` in a canonical trial TOML (`activation = "relu"` → `"relu"`).
fn config_value(config_toml: &str, key: &str) -> Option<String> {
    config_toml.lines().find_map(|l| {
        let (k, v) = l.split_once(" = ")?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

async fn get_trial(client: &mut Client, id: u64, index: u32) -> Result<TrialDetail> {
    client
        .sweeps
        .get_trial(GetTrialRequest {
            sweep_id: id,
            index,
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| client.status(s))
}

/// A configuration's index, its first succeeded trial's index, that trial's checks
/// (untrained, trained) and why it had none.
type Checks = (usize, u32, Option<GradCheck>, Option<GradCheck>, String);

/// What the report needs besides the aggregates, fetched trial by trial (one per
/// configuration at most, plus one per flagged verdict and configuration).
struct Details {
    /// (config index, verdict name) → the first flagged trial's verdict and its seed.
    flagged: BTreeMap<(usize, String), (Verdict, u64, u32)>,
    /// Verdict name → its criterion (from any trial that reported it).
    criteria: BTreeMap<String, String>,
    /// Config index → the first succeeded trial's index and result checks.
    checks: Vec<Checks>,
    /// Trial 0's canonical config, for the values of the axes the sweep did not vary.
    base_config: String,
}

const WATCHED: [&str; 2] = ["stagnant_loss", "vanishing_gradients"];
/// At most this many configurations get their gradient check fetched and shown.
const MAX_CHECKED_CONFIGS: usize = 64;

async fn details(client: &mut Client, sweep: &Sweep, study: &Study) -> Result<Details> {
    let mut d = Details {
        flagged: BTreeMap::new(),
        criteria: BTreeMap::new(),
        checks: Vec::new(),
        base_config: String::new(),
    };
    if sweep.trial_count > 0 {
        let t = get_trial(client, sweep.id, 0).await?;
        d.base_config = t.trial.map(|t| t.config_toml).unwrap_or_default();
    }
    for (ci, c) in study.configs.iter().enumerate() {
        for name in WATCHED {
            let Some(&(_, index)) = c.flagged.get(name) else {
                continue;
            };
            let t = get_trial(client, sweep.id, index).await?;
            let Some(trial) = t.trial else { continue };
            for v in trial.result.iter().flat_map(|r| &r.verdicts) {
                d.criteria
                    .entry(v.name.clone())
                    .or_insert_with(|| v.criterion.clone());
                if v.name == name && v.flagged {
                    d.flagged
                        .insert((ci, name.to_owned()), (v.clone(), trial.seed, index));
                }
            }
        }
        if ci < MAX_CHECKED_CONFIGS
            && let Some(index) = c.first_succeeded
        {
            let t = get_trial(client, sweep.id, index).await?;
            let Some(trial) = t.trial else { continue };
            for v in trial.result.iter().flat_map(|r| &r.verdicts) {
                d.criteria
                    .entry(v.name.clone())
                    .or_insert_with(|| v.criterion.clone());
            }
            let r = trial.result.unwrap_or_default();
            d.checks.push((
                ci,
                index,
                r.gradcheck_initial,
                r.gradcheck,
                r.gradcheck_skipped,
            ));
        }
    }
    Ok(d)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;\
color:#222;line-height:1.4}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.9em;display:block;overflow-x:auto;max-width:100%}th,td{border:1px solid #ccc;\
padding:.2em .5em;text-align:left}th{background:#f3f3f3}pre{background:#f7f7f7;padding:.6em;\
overflow:auto;font-size:.85em}svg{max-width:100%;height:auto}.row{display:flex;gap:1.5em;\
flex-wrap:wrap;align-items:flex-start}.row>div{flex:1 1 420px;min-width:0}.fig{flex:3 1 700px!important}\
.verdicts li{margin:.3em 0}.flagged{color:#b00}.ok{color:#080}.not-varied{font-style:italic}\
.cmd{font-size:.8em;color:#555}code{background:#f3f3f3;padding:0 .2em}";

fn figure(kind: Kind, plan: &Plan) -> Result<String> {
    let svg = crate::plot::svg(kind, plan)?;
    Ok(format!(
        "<figure id=\"fig-{}\">{svg}<figcaption>{}</figcaption></figure>",
        kind.stem(),
        esc(kind.title())
    ))
}

fn not_varied(axis: &str, d: &Details) -> String {
    let value = config_value(&d.base_config, axis)
        .map(|v| format!(": every trial used {axis} = {v}"))
        .unwrap_or_default();
    format!(
        "<p class=\"not-varied\">The sweep did not vary {}{}, so there is nothing to compare \
         here.</p>",
        esc(axis),
        esc(&value)
    )
}

/// One verdict's list: per configuration, flagged seeds / finished seeds, and the first
/// flagged seed's reason.
fn verdict_list(name: &str, study: &Study, d: &Details) -> String {
    let all: Vec<usize> = (0..study.axes.len()).collect();
    let mut out = format!("<h4>verdict <code>{}</code></h4>", esc(name));
    if let Some(c) = d.criteria.get(name) {
        let _ = write!(out, "<p class=\"cmd\">criterion: {}</p>", esc(c));
    }
    out.push_str("<ul class=\"verdicts\">");
    let mut clear: Vec<String> = Vec::new();
    for (ci, c) in study.configs.iter().enumerate() {
        let n = c.flagged.get(name).map_or(0, |f| f.0);
        let label = esc(&study.label(c, &all));
        if n == 0 {
            clear.push(format!("{label} (0/{})", c.trials));
            continue;
        }
        let _ = write!(
            out,
            "<li><b>{label}</b>: <span class=\"flagged\">FLAGGED</span> {n}/{}",
            c.trials
        );
        if let Some((v, seed, index)) = d.flagged.get(&(ci, name.to_owned())) {
            let _ = write!(out, " — seed {seed} (trial {index}): {}", esc(&v.reason));
        }
        out.push_str("</li>");
    }
    if !clear.is_empty() {
        let _ = write!(
            out,
            "<li><span class=\"ok\">not flagged</span> in {} {}: <small>{}</small></li>",
            clear.len(),
            if clear.len() == 1 {
                "configuration"
            } else {
                "configurations"
            },
            clear.join("; ")
        );
    }
    out.push_str("</ul>");
    out
}

fn side_by_side(figure: &str, text: &str) -> String {
    format!("<div class=\"row\"><div class=\"fig\">{figure}</div><div>{text}</div></div>")
}

fn gradcheck_rows(out: &mut String, label: &str, index: u32, g: &GradCheck, id: u64) {
    let stage = if g.stage.is_empty() {
        "trained"
    } else {
        &g.stage
    };
    for l in &g.layers {
        let directional = l
            .tensors
            .iter()
            .map(|t| format!("{} {:.2e}", t.param, t.rel_error))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{id}/{index}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2e}</td>\
             <td>{:.2e}</td><td>{}</td><td>{}</td></tr>",
            esc(label),
            esc(stage),
            esc(&l.layer),
            l.checked,
            l.max_abs_error,
            l.max_rel_error,
            esc(&directional),
            if l.passed { "passed" } else { "FAILED" }
        );
    }
}

fn config_of(study: &Study, ci: usize) -> &Config {
    &study.configs[ci]
}

/// The report's HTML.
pub async fn html(client: &mut Client, id: u64) -> Result<String> {
    let sweep = crate::get_sweep(client, id).await?;
    let study = crate::plot::collect(client, &sweep).await?;
    let d = details(client, &sweep, &study).await?;
    let name = crate::plot::sweep_name(&sweep);
    let has = |axis: &str| study.axis(axis).is_some();
    let plan_by = |by: Vec<usize>| Plan {
        study: &study,
        by,
        name: name.clone(),
    };
    let default_by = crate::plot::facet_axes(&sweep, &[])?;
    let default_plan = plan_by(default_by);
    let c = sweep.counts.unwrap_or_default();
    let all: Vec<usize> = (0..study.axes.len()).collect();

    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(&format!("gradsweep report: {name}"))
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p>{} trials: {} succeeded, {} diverged, {} failed, {} cancelled, {} \
         unfinished; {} configurations over {} seed(s). Figures aggregate the succeeded and \
         diverged trials (mean ± std over seeds); tables aggregate the succeeded ones, as \
         <code>sweep table</code> does.</p>",
        esc(&format!("gradsweep report: {name}")),
        sweep.trial_count,
        c.succeeded,
        c.diverged,
        c.failed,
        c.cancelled,
        c.pending + c.leased,
        study.configs.len(),
        sweep.seeds.len()
    );
    h.push_str(
        "<nav><ol><li><a href=\"#overview\">Overview</a></li>\
         <li><a href=\"#activations\">Activations compared</a></li>\
         <li><a href=\"#vanishing\">Vanishing gradients, three ways</a></li>\
         <li><a href=\"#remedies\">Remedies side by side</a></li>\
         <li><a href=\"#regularisers\">Regularisers compared</a></li>\
         <li><a href=\"#gradcheck\">Gradient check per layer</a></li>\
         <li><a href=\"#provenance\">Spec, dataset and software</a></li></ol></nav>",
    );

    // Overview.
    h.push_str("<section id=\"overview\"><h2>Overview</h2>");
    h.push_str(
        "<p>Every configuration, with each verdict's count (flagged / finished trials).</p>",
    );
    h.push_str(&table(client, id, &[], &[], true).await?);
    h.push_str(&figure(Kind::Accuracy, &default_plan)?);
    h.push_str("</section>");

    // Activations.
    h.push_str("<section id=\"activations\"><h2>Activations compared</h2>");
    if has("activation") {
        let i = study.axis("activation").into_iter().collect();
        let t = table(
            client,
            id,
            &["activation"],
            &["train_loss", "val_loss", "test_accuracy"],
            true,
        )
        .await?;
        h.push_str(&side_by_side(&figure(Kind::Loss, &plan_by(i))?, &t));
    } else {
        h.push_str(&not_varied("activation", &d));
    }
    h.push_str("</section>");

    // Vanishing gradients, three ways.
    h.push_str(
        "<section id=\"vanishing\"><h2>Vanishing gradients, detected three ways</h2>\
         <p>Each verdict is shown beside the figure that justifies it.</p>",
    );
    h.push_str("<h3>1. A stagnant loss</h3>");
    h.push_str(&side_by_side(
        &figure(Kind::Loss, &default_plan)?,
        &format!(
            "<p>A loss that stays flat near chance's (ln classes) while others fall.</p>{}",
            verdict_list("stagnant_loss", &study, &d)
        ),
    ));
    h.push_str("<h3>2. Weight mean and std per epoch</h3>");
    h.push_str(&side_by_side(
        &figure(Kind::Weights, &default_plan)?,
        &format!(
            "<p>Flat weight statistics in the first layers: their weights do not move, \
             because no gradient reaches them.</p>{}",
            verdict_list("vanishing_gradients", &study, &d)
        ),
    ));
    h.push_str("<h3>3. First against last epoch: weight change and gradient norms</h3>");
    h.push_str(&side_by_side(
        &figure(Kind::Change, &default_plan)?,
        "<p>How far each layer's weights moved from their initial values by the last \
         epoch, and each epoch's update ratio in the first and the last epoch: a first \
         layer near or below 1e-3 barely trained. The verdict's second criterion.</p>",
    ));
    h.push_str(&side_by_side(
        &figure(Kind::Gradients, &default_plan)?,
        &format!(
            "<p>Per layer, the gradient norm on a log axis: a first layer orders of \
             magnitude below the last is the vanishing gradient itself (the verdict's \
             first criterion).</p>{}",
            verdict_list("vanishing_gradients", &study, &d)
        ),
    ));
    h.push_str("</section>");

    // Remedies.
    h.push_str(
        "<section id=\"remedies\"><h2>Remedies side by side</h2><p>ReLU variants, batch \
         normalisation and initialisation, each compared over every other axis and the \
         seeds.</p><div class=\"row\">",
    );
    for (axis, title) in [
        ("activation", "Activations (ReLU variants)"),
        ("batchnorm", "Batch normalisation"),
        ("init", "Initialisation"),
    ] {
        let _ = write!(h, "<div id=\"remedy-{axis}\"><h3>{}</h3>", esc(title));
        if has(axis) {
            h.push_str(&table(client, id, &[axis], &["test_accuracy", "train_loss"], true).await?);
        } else {
            h.push_str(&not_varied(axis, &d));
        }
        h.push_str("</div>");
    }
    h.push_str("</div>");
    if has("batchnorm") || has("init") {
        let by: Vec<usize> = ["batchnorm", "init"]
            .iter()
            .filter_map(|a| study.axis(a))
            .collect();
        h.push_str(&figure(Kind::Loss, &plan_by(by))?);
    }
    h.push_str("</section>");

    // Regularisers.
    h.push_str("<section id=\"regularisers\"><h2>Regularisers compared</h2>");
    if has("regularization") {
        let t = table(
            client,
            id,
            &["regularization"],
            &["train_accuracy", "test_accuracy", "val_loss"],
            false,
        )
        .await?;
        let mut gap = String::from(
            "<p>Train − test accuracy gap (final epoch, succeeded trials): a wide gap is \
             overfitting.</p><ul>",
        );
        for (label, train, test) in study.accuracy_by("regularization") {
            if let (Some(a), Some(b)) = (train.mean(), test.mean()) {
                let _ = write!(
                    gap,
                    "<li><b>{}</b>: {:.1} points</li>",
                    esc(label.as_deref().unwrap_or("")),
                    100.0 * (a - b)
                );
            }
        }
        gap.push_str("</ul>");
        h.push_str(&side_by_side(
            &figure(Kind::Accuracy, &default_plan)?,
            &(t + &gap),
        ));
    } else {
        h.push_str(&not_varied("regularization", &d));
    }
    h.push_str("</section>");

    // Gradient check.
    h.push_str("<section id=\"gradcheck\"><h2>Gradient check per layer</h2>");
    let with_checks: Vec<_> = d
        .checks
        .iter()
        .filter(|(_, _, a, b, _)| a.is_some() || b.is_some())
        .collect();
    if with_checks.is_empty() {
        let why = d
            .checks
            .iter()
            .map(|(_, _, _, _, s)| s.as_str())
            .find(|s| !s.is_empty())
            .unwrap_or("no succeeded trial");
        let _ = write!(
            h,
            "<p class=\"not-varied\">No gradient check was run ({}).</p>",
            esc(why)
        );
    } else {
        let criterion = with_checks
            .iter()
            .find_map(|(_, _, a, b, _)| a.as_ref().or(b.as_ref()))
            .map(|g| g.criterion.clone())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<p>Per configuration, its first succeeded trial's check, on the untrained \
             and the trained model. {}</p><table id=\"gradcheck-table\"><thead><tr>\
             <th>configuration</th><th>trial</th><th>stage</th><th>layer</th>\
             <th>checked</th><th>max abs err</th><th>max rel err</th>\
             <th>directional rel err</th><th>result</th></tr></thead><tbody>",
            esc(&criterion)
        );
        for (ci, index, initial, trained, _) in &with_checks {
            let label = study.label(config_of(&study, *ci), &all);
            for g in [initial, trained].into_iter().flatten() {
                gradcheck_rows(&mut h, &label, *index, g, id);
            }
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");

    // Provenance.
    let _ = write!(
        h,
        "<section id=\"provenance\"><h2>Spec, dataset and software</h2>\
         <p>Dataset fingerprint (BLAKE3 of the data as loaded): <code>{}</code></p>\
         <p>Written by gradsweep's <code>sweep report</code>, version {}.</p>\
         <h3>The sweep's spec</h3><pre>{}</pre></section>",
        esc(if sweep.dataset_fingerprint.is_empty() {
            "none yet (no trial has finished)"
        } else {
            &sweep.dataset_fingerprint
        }),
        esc(env!("CARGO_PKG_VERSION")),
        esc(&sweep.spec_toml)
    );
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Checks that `out`'s directory exists and takes a file, before any work.
pub(crate) fn check_out(out: &Path) -> Result<()> {
    if out.is_dir() {
        return Err(CliError(format!(
            "--out {}: is a directory; name the HTML file to write",
            out.display()
        )));
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".sweep-report-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| CliError(format!("--out {}: cannot write there: {e}", out.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `sweep report`: writes the report of sweep `id` to `out` (a temporary file, then a
/// rename); returns the line to print.
pub async fn report(client: &mut Client, id: u64, out: &Path) -> Result<String> {
    check_out(out)?;
    let html = html(client, id).await?;
    crate::plot::write_atomic(out, html.as_bytes())?;
    Ok(format!("wrote {} ({} bytes)\n", out.display(), html.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn markdown_tables_split_into_their_cells() {
        let t = gradsweep_proto::Table {
            sweep_id: 1,
            axes: vec!["activation".into()],
            metrics: vec!["test_accuracy".into()],
            rows: vec![gradsweep_proto::TableRow {
                values: vec!["relu".into()],
                stats: vec![gradsweep_proto::MetricStat {
                    metric: "test_accuracy".into(),
                    mean: 0.5,
                    std: Some(0.25),
                    count: 2,
                }],
                diverged: 1,
                ..Default::default()
            }],
        };
        let md = render::table_with(&t, render::Format::Md, false);
        let (header, rows) = md_cells(&md).unwrap();
        assert_eq!(header, ["activation", "test_accuracy", "not in stats"]);
        assert_eq!(rows, [["relu", "0.5000 ± 0.2500 (2)", "1 diverged"]]);
        let html = html_table(&t, false, "--by activation --format md");
        assert!(html.contains("<td>0.5000 ± 0.2500 (2)</td>"));
        // A label holding ` | ` cannot be split back: the text table instead.
        let mut odd = t.clone();
        odd.rows[0].values[0] = "a | b".into();
        assert!(md_cells(&render::table_with(&odd, render::Format::Md, false)).is_none());
        assert!(html_table(&odd, false, "").contains("<pre class=\"table\""));
    }

    #[test]
    fn config_values_come_from_the_canonical_toml() {
        let toml = "name = \"x\"\nactivation = \"relu\"\nbatchnorm = false\n";
        assert_eq!(
            config_value(toml, "activation").as_deref(),
            Some("\"relu\"")
        );
        assert_eq!(config_value(toml, "init"), None);
    }
}
