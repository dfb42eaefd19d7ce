//! The five figures, drawn with `plotters` on any backend (SVG text, or an RGB buffer
//! encoded as PNG): Okabe–Ito colours, labelled axes, legends in a strip of their own
//! beside the panels, a diverged trial marked × where its numbers end.

use super::aggregate::{Config, Series, Stat, Study};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// The figure kinds, one file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Train and validation loss per epoch, faceted by the `--by` axes.
    Loss,
    /// Per-layer weight mean and weight std per epoch.
    Weights,
    /// Per-layer gradient norm per epoch, log axis.
    Gradients,
    /// Per-layer weight change, first epoch against last, log axis.
    Change,
    /// Test accuracy per configuration; train vs test per regulariser.
    Accuracy,
}

impl Kind {
    /// Every kind, in the order the files are numbered.
    pub const ALL: [Kind; 5] = [
        Kind::Loss,
        Kind::Weights,
        Kind::Gradients,
        Kind::Change,
        Kind::Accuracy,
    ];

    /// The file name without its extension.
    pub fn stem(self) -> &'static str {
        match self {
            Kind::Loss => "1-loss",
            Kind::Weights => "2-weight-stats",
            Kind::Gradients => "3-gradient-norms",
            Kind::Change => "4-weight-change",
            Kind::Accuracy => "5-accuracy",
        }
    }

    /// What the figure shows, one line.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Loss => {
                "train (solid) and validation (dashed) loss per epoch, mean ± std over seeds"
            }
            Kind::Weights => {
                "per-layer weight mean and weight std per epoch, mean ± std over seeds"
            }
            Kind::Gradients => "per-layer gradient norm per epoch (log scale), mean over seeds",
            Kind::Change => "weight change per layer: first epoch against last (log scale)",
            Kind::Accuracy => {
                "final test accuracy per configuration; train vs test accuracy per regulariser"
            }
        }
    }
}

/// The Okabe–Ito palette, ordered for contrast on white (yellow last).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0xF0, 0xE4, 0x42),
];

const FONT: &str = "sans-serif";
const TITLE_H: u32 = 36;
const PANEL_W: u32 = 400;
const PANEL_H: u32 = 270;

static FONT_BYTES: &[u8] = include_bytes!("font/DejaVuSans-subset.ttf");

/// Registers the embedded font (DejaVu Sans, cut down) as `sans-serif` for `plotters`'
/// text layout and bitmap text; once per process.
pub fn register_font() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded font cannot be read".to_owned())
    })
    .clone()
}

/// What a figure is drawn from: the study and the chosen facets.
pub struct Plan<'a> {
    /// The aggregates.
    pub study: &'a Study,
    /// The axes (indices into `study.axes`) that facet the loss figure.
    pub by: Vec<usize>,
    /// `sweep 3 "demo"`, the start of every title.
    pub name: String,
}

type R = Result<(), String>;

fn e<T: std::fmt::Display>(x: T) -> String {
    x.to_string()
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Past the palette's eight colours, lines are dashed (until sixteen, then solid again).
fn second_cycle(i: usize) -> bool {
    (i / PALETTE.len()) % 2 == 1
}

impl Plan<'_> {
    /// Indices of the axes that are not facets.
    fn others(&self) -> Vec<usize> {
        (0..self.study.axes.len())
            .filter(|i| !self.by.contains(i))
            .collect()
    }

    /// The facets, in order of appearance: their label and their configurations.
    fn facets(&self) -> Vec<(String, Vec<&Config>)> {
        let mut out: Vec<(String, Vec<&Config>)> = Vec::new();
        for c in &self.study.configs {
            let label = self.study.label(c, &self.by);
            match out.iter_mut().find(|(l, _)| *l == label) {
                Some((_, v)) => v.push(c),
                None => out.push((label, vec![c])),
            }
        }
        if out.is_empty() {
            out.push(("no finished trials".into(), Vec::new()));
        }
        out
    }

    /// Each configuration's series label over the non-facet axes, and its colour index
    /// (the same label, the same colour, in every facet).
    fn series_labels(&self) -> Vec<String> {
        let others = self.others();
        let mut labels: Vec<String> = Vec::new();
        for c in &self.study.configs {
            let l = self.study.label(c, &others);
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        labels
    }

    fn config_label(&self, c: &Config) -> String {
        let all: Vec<usize> = (0..self.study.axes.len()).collect();
        self.study.label(c, &all)
    }

    fn layers(&self) -> Vec<String> {
        let l = self.study.layer_names();
        if l.is_empty() {
            vec!["(no layer diagnostics)".into()]
        } else {
            l
        }
    }

    /// The legend: one entry per configuration with its colour and diverged count.
    fn config_legend(&self) -> Vec<Entry> {
        self.study
            .configs
            .iter()
            .enumerate()
            .map(|(i, c)| Entry {
                colour: colour(i),
                label: with_diverged(self.config_label(c), c),
                kind: if second_cycle(i) {
                    EntryKind::Dashed
                } else {
                    EntryKind::Line
                },
            })
            .collect()
    }
}

fn with_diverged(label: String, c: &Config) -> String {
    if c.any_diverged() {
        format!("{label} ({} diverged ×)", c.diverged.len())
    } else {
        label
    }
}

/// The pixel size of a figure.
pub fn size(kind: Kind, plan: &Plan) -> (u32, u32) {
    let legend = legend_width(plan, kind);
    let grid = |panels: usize, cols: usize| {
        let cols = cols.clamp(1, panels.max(1));
        let rows = panels.max(1).div_ceil(cols);
        (
            cols as u32 * PANEL_W + legend,
            rows as u32 * PANEL_H + TITLE_H,
        )
    };
    match kind {
        Kind::Loss => {
            let (w, h) = grid(plan.facets().len(), 3);
            let entries = plan.series_labels().len() as u32 + 8;
            (w, h.max(TITLE_H + 40 + 18 * entries))
        }
        Kind::Weights => {
            let (w, h) = grid(plan.layers().len() * 2, 2);
            (w, h.max(legend_height(plan)))
        }
        Kind::Gradients => {
            let (w, h) = grid(plan.layers().len(), 3);
            (w, h.max(legend_height(plan)))
        }
        Kind::Change => {
            let (w, h) = grid(2, 2);
            (w + 100, h.max(legend_height(plan)))
        }
        Kind::Accuracy => {
            let n = plan.study.configs.len().max(1);
            let groups = plan.study.accuracy_by("regularization").len().max(1) * 2;
            let rows = n.max(groups) as u32;
            let label_w = accuracy_label_width(plan);
            (
                2 * (PANEL_W + label_w) + legend,
                (rows * 26 + 110).max(PANEL_H) + TITLE_H,
            )
        }
    }
}

fn legend_height(plan: &Plan) -> u32 {
    TITLE_H + 40 + 18 * (plan.study.configs.len() as u32 + 4)
}

fn text_width(s: &str) -> u32 {
    // DejaVu Sans at 12 px averages about 7 px a character.
    s.chars().count() as u32 * 7
}

fn legend_width(plan: &Plan, kind: Kind) -> u32 {
    let labels: Vec<String> = match kind {
        Kind::Loss => plan.series_labels(),
        _ => plan.config_legend().into_iter().map(|e| e.label).collect(),
    };
    let longest = labels.iter().map(|l| text_width(l)).max().unwrap_or(0);
    (longest + 24 + 40).clamp(320, 520)
}

fn accuracy_label_width(plan: &Plan) -> u32 {
    let longest = plan
        .study
        .configs
        .iter()
        .map(|c| text_width(&with_diverged(plan.config_label(c), c)))
        .max()
        .unwrap_or(0);
    (longest + 20).clamp(120, 420)
}

/// A legend entry: a line (solid or dashed), a marker, or a filled box.
struct Entry {
    colour: RGBColor,
    label: String,
    kind: EntryKind,
}

enum EntryKind {
    Line,
    Dashed,
    Cross,
    Box,
    Circle(bool),
    Heading,
}

impl Entry {
    fn line(colour: RGBColor, label: String) -> Entry {
        Entry {
            colour,
            label,
            kind: EntryKind::Line,
        }
    }
    fn other(kind: EntryKind, colour: RGBColor, label: &str) -> Entry {
        Entry {
            colour,
            label: label.into(),
            kind,
        }
    }
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry]) -> R {
    let style = (FONT, 12).into_font();
    let (w, _) = area.dim_in_pixel();
    let max_chars = ((w.saturating_sub(44)) / 7).max(8) as usize;
    for (i, entry) in entries.iter().enumerate() {
        let y = 12 + 18 * i as i32;
        let c = entry.colour;
        match entry.kind {
            EntryKind::Line => area
                .draw(&PathElement::new(vec![(6, y), (30, y)], c.stroke_width(2)))
                .map_err(e)?,
            EntryKind::Dashed => {
                for x in [6, 16, 26] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 5, y)],
                        c.stroke_width(2),
                    ))
                    .map_err(e)?;
                }
            }
            EntryKind::Cross => area
                .draw(&Cross::new((18, y), 5, c.stroke_width(2)))
                .map_err(e)?,
            EntryKind::Box => area
                .draw(&Rectangle::new([(8, y - 5), (28, y + 5)], c.filled()))
                .map_err(e)?,
            EntryKind::Circle(filled) => {
                let s = if filled {
                    c.filled()
                } else {
                    c.stroke_width(2)
                };
                area.draw(&Circle::new((18, y), 4, s)).map_err(e)?
            }
            EntryKind::Heading => {}
        }
        // A long label is cut in its middle part, keeping a ` (2 diverged ×)` suffix.
        let (head, tail) = match entry.label.rfind(" (") {
            Some(i) if entry.label.ends_with("diverged ×)") => entry.label.split_at(i),
            _ => (entry.label.as_str(), ""),
        };
        let room = max_chars.saturating_sub(tail.chars().count()).max(4);
        let label = if head.chars().count() > room {
            head.chars().take(room - 1).collect::<String>() + "…" + tail
        } else {
            entry.label.clone()
        };
        let x = if matches!(entry.kind, EntryKind::Heading) {
            6
        } else {
            38
        };
        area.draw(&Text::new(label, (x, y - 7), style.clone()))
            .map_err(e)?;
    }
    Ok(())
}

/// The panels' area and the legend's.
type Areas<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

/// Splits the root into the title, the panels and the legend strip; draws the title.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    plan: &Plan,
    kind: Kind,
) -> Result<Areas<DB>, String> {
    root.fill(&WHITE).map_err(e)?;
    let (title, rest) = root.split_vertically(TITLE_H);
    title
        .draw(&Text::new(
            format!("{}: {}", plan.name, kind.title()),
            (10, 10),
            (FONT, 15).into_font(),
        ))
        .map_err(e)?;
    let (w, _) = rest.dim_in_pixel();
    let legend = legend_width(plan, kind);
    let (panels, legend_area) = rest.split_horizontally(w - legend);
    Ok((panels, legend_area.margin(10, 0, 10, 0)))
}

fn integral_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", x.round())
    } else {
        String::new()
    }
}

/// Padded (lo, hi) of the values; (0, 1) when there are none.
fn linear_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(hi.abs() * 1e-3).max(1e-9);
    (lo - pad, hi + pad)
}

/// (lo, hi) of the positive values for a log axis, widened to whole decades.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (1e-3, 1.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    (lo, hi)
}

fn band_values(s: &Series) -> impl Iterator<Item = f64> + '_ {
    s.points()
        .into_iter()
        .flat_map(|(_, m, sd)| [m - sd.unwrap_or(0.0), m + sd.unwrap_or(0.0)])
}

fn x_range(plan: &Plan) -> std::ops::Range<f64> {
    0.5..(plan.study.max_epoch().max(1) as f64 + 0.5)
}

/// Draws a series' mean (solid or dashed) and its ±std band, clamped to `floor` below
/// (a log axis).
fn draw_series<DB: DrawingBackend, Y>(
    chart: &mut Chart<DB, Y>,
    s: &Series,
    c: RGBColor,
    dashed: bool,
    floor: f64,
    band: bool,
) -> R
where
    Y: Ranged<ValueType = f64>,
{
    let pts = s.points();
    if pts.is_empty() {
        return Ok(());
    }
    if band && pts.iter().any(|p| p.2.is_some()) {
        // On a log axis (a floor above f64::MIN) the lower edge stops at a tenth of
        // the mean: a std larger than the mean would reach zero, off the axis.
        let log = floor > f64::MIN;
        let lower = |m: f64, sd: f64| {
            let l = m - sd;
            if log { l.max(m / 10.0) } else { l }
        };
        let mut poly: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(x, m, sd)| (f64::from(x), (m + sd.unwrap_or(0.0)).max(floor)))
            .collect();
        poly.extend(
            pts.iter()
                .rev()
                .map(|&(x, m, sd)| (f64::from(x), lower(m, sd.unwrap_or(0.0)).max(floor))),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))
            .map_err(e)?;
    }
    let line: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(x, m, _)| (f64::from(x), m.max(floor)))
        .collect();
    if dashed {
        chart
            .draw_series(DashedLineSeries::new(line.clone(), 6, 4, c.stroke_width(2)))
            .map_err(e)?;
    } else {
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
            .map_err(e)?;
    }
    if pts.len() == 1 {
        // One epoch: a line of one point is invisible.
        chart
            .draw_series(std::iter::once(Circle::new(line[0], 3, c.filled())))
            .map_err(e)?;
    }
    Ok(())
}

/// Draws `kind` on `root`.
pub fn draw<DB: DrawingBackend>(kind: Kind, plan: &Plan, root: &DrawingArea<DB, Shift>) -> R {
    register_font()?;
    let (panels, legend) = frame(root, plan, kind)?;
    match kind {
        Kind::Loss => loss(plan, &panels, &legend),
        Kind::Weights => weights(plan, &panels, &legend),
        Kind::Gradients => gradients(plan, &panels, &legend),
        Kind::Change => change(plan, &panels, &legend),
        Kind::Accuracy => accuracy(plan, &panels, &legend),
    }
}

fn grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panels: usize,
    cols: usize,
) -> Vec<DrawingArea<DB, Shift>> {
    let cols = cols.clamp(1, panels.max(1));
    let rows = panels.max(1).div_ceil(cols);
    area.split_evenly((rows, cols))
}

type Chart<'a, DB, Y> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// An epoch axis and a y axis labelled `y_desc`, numbers in at most four digits.
fn mesh<DB: DrawingBackend, Y>(chart: &mut Chart<DB, Y>, plan: &Plan, y_desc: &str) -> R
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(plan.study.max_epoch().min(12) as usize + 1)
        .x_label_formatter(&integral_label)
        .y_label_formatter(&|y| number(*y))
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)
}

/// A tick label: plain for ordinary magnitudes, else in e-notation.
pub fn number(y: f64) -> String {
    let a = y.abs();
    // A tick a rounding error away from zero is zero.
    if a < 1e-12 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{y:.0e}")
    } else {
        let s = format!("{y:.3}");
        let s = s.trim_end_matches('0');
        s.trim_end_matches('.').to_owned()
    }
}

/// One loss panel: each configuration's train and validation bands and lines, and its
/// diverged trials' ×.
fn loss_panel<DB: DrawingBackend, Y>(
    chart: &mut Chart<DB, Y>,
    plan: &Plan,
    configs: &[&Config],
    labels: &[String],
    others: &[usize],
    floor: f64,
    top: f64,
) -> R
where
    Y: Ranged<ValueType = f64>,
{
    for c in configs {
        let label = plan.study.label(c, others);
        let i = labels.iter().position(|l| *l == label).unwrap_or(0);
        let col = colour(i);
        draw_series(chart, &c.train_loss, col, false, floor, true)?;
        draw_series(chart, &c.val_loss, col, true, floor, true)?;
        for d in &c.diverged {
            let (x, y) = match d.train_loss {
                Some(y) if d.last_finite_epoch > 0 => (f64::from(d.last_finite_epoch), y.min(top)),
                // Diverged in its first epoch: × on the top edge at that epoch.
                _ => (f64::from(d.diverged_epoch.max(1)), top),
            };
            let x = x.clamp(x_range(plan).start, x_range(plan).end);
            chart
                .draw_series(std::iter::once(Cross::new((x, y), 6, col.stroke_width(3))))
                .map_err(e)?;
        }
    }
    Ok(())
}

fn loss<DB: DrawingBackend>(
    plan: &Plan,
    panels: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
) -> R {
    let facets = plan.facets();
    let labels = plan.series_labels();
    let others = plan.others();
    let (lo, hi) = linear_range(
        plan.study
            .configs
            .iter()
            .flat_map(|c| band_values(&c.train_loss).chain(band_values(&c.val_loss)))
            .chain(plan.study.configs.iter().flat_map(|c| {
                c.diverged
                    .iter()
                    .filter_map(|d| d.train_loss)
                    .collect::<Vec<_>>()
            })),
    );
    let lo = lo.max(0.0);
    // Losses spanning more than two decades (a blown-up configuration beside ones that
    // learn) go on a log axis, so that neither flattens the other.
    let (llo, lhi) = log_range(
        plan.study
            .configs
            .iter()
            .flat_map(|c| band_values(&c.train_loss).chain(band_values(&c.val_loss))),
    );
    let log = lhi / llo > 1e2 * 10.0;
    for (area, (facet, configs)) in grid(panels, facets.len(), 3).iter().zip(&facets) {
        let builder = || {
            let mut b = ChartBuilder::on(area);
            b.caption(facet, (FONT, 13))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(62);
            b
        };
        let y_desc = if log {
            "cross-entropy loss (nats, log)"
        } else {
            "cross-entropy loss (nats)"
        };
        if log {
            let mut chart = builder()
                .build_cartesian_2d(x_range(plan), (llo..lhi).log_scale())
                .map_err(e)?;
            mesh(&mut chart, plan, y_desc)?;
            loss_panel(&mut chart, plan, configs, &labels, &others, llo, lhi)?;
        } else {
            let mut chart = builder()
                .build_cartesian_2d(x_range(plan), lo..hi)
                .map_err(e)?;
            mesh(&mut chart, plan, y_desc)?;
            loss_panel(&mut chart, plan, configs, &labels, &others, f64::MIN, hi)?;
        }
    }
    let mut entries: Vec<Entry> = vec![Entry::other(
        EntryKind::Heading,
        BLACK,
        if others.is_empty() {
            "configuration"
        } else {
            "colour: configuration"
        },
    )];
    for (i, l) in labels.iter().enumerate() {
        let diverged: usize = plan
            .study
            .configs
            .iter()
            .filter(|c| plan.study.label(c, &others) == *l)
            .map(|c| c.diverged.len())
            .sum();
        let l = if diverged > 0 {
            format!("{l} ({diverged} diverged ×)")
        } else {
            l.clone()
        };
        entries.push(Entry::line(colour(i), l));
    }
    entries.extend([
        Entry::other(EntryKind::Heading, BLACK, ""),
        Entry::other(EntryKind::Line, BLACK, "train loss"),
        Entry::other(EntryKind::Dashed, BLACK, "validation loss"),
        Entry::other(
            EntryKind::Box,
            RGBColor(200, 200, 200),
            "± std over seeds (log axis: ≥ mean/10)",
        ),
        Entry::other(
            EntryKind::Cross,
            BLACK,
            "diverged trial (last finite epoch)",
        ),
    ]);
    if !plan.by.is_empty() {
        let by: Vec<&str> = plan
            .by
            .iter()
            .map(|&i| plan.study.axes[i].as_str())
            .collect();
        entries.push(Entry::other(
            EntryKind::Heading,
            BLACK,
            &format!("panels: {}", by.join(", ")),
        ));
    }
    draw_legend(legend, &entries)
}

fn weights<DB: DrawingBackend>(
    plan: &Plan,
    panels: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
) -> R {
    let layers = plan.layers();
    let areas = grid(panels, layers.len() * 2, 2);
    for (li, name) in layers.iter().enumerate() {
        for (k, (what, pick)) in [
            (
                "weight mean",
                (|l: &super::aggregate::LayerSeries| &l.weight_mean)
                    as fn(&super::aggregate::LayerSeries) -> &Series,
            ),
            ("weight std", |l| &l.weight_std),
        ]
        .into_iter()
        .enumerate()
        {
            let area = &areas[li * 2 + k];
            let series: Vec<&Series> = plan
                .study
                .configs
                .iter()
                .filter_map(|c| c.layers.get(li).map(pick))
                .collect();
            let (lo, hi) = linear_range(series.iter().flat_map(|s| band_values(s)));
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name}: {what}"), (FONT, 13))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(62)
                .build_cartesian_2d(x_range(plan), lo..hi)
                .map_err(e)?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .x_labels(plan.study.max_epoch().min(12) as usize + 1)
                .x_label_formatter(&integral_label)
                .y_label_formatter(&|y| number(*y))
                .x_desc("epoch")
                .y_desc(format!("{what} (weight units)"))
                .label_style((FONT, 11))
                .axis_desc_style((FONT, 12))
                .draw()
                .map_err(e)?;
            for (ci, c) in plan.study.configs.iter().enumerate() {
                if let Some(l) = c.layers.get(li) {
                    draw_series(
                        &mut chart,
                        pick(l),
                        colour(ci),
                        second_cycle(ci),
                        f64::MIN,
                        true,
                    )?;
                }
            }
        }
    }
    let mut entries = plan.config_legend();
    entries.push(Entry::other(
        EntryKind::Box,
        RGBColor(200, 200, 200),
        "± std over seeds",
    ));
    draw_legend(legend, &entries)
}

fn gradients<DB: DrawingBackend>(
    plan: &Plan,
    panels: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
) -> R {
    let layers = plan.layers();
    // One y range for every layer, so that a vanishing layer sits visibly lower.
    let (lo, hi) = log_range(
        plan.study
            .configs
            .iter()
            .flat_map(|c| c.layers.iter().flat_map(|l| band_values(&l.grad_norm))),
    );
    for (li, (area, name)) in grid(panels, layers.len(), 3)
        .iter()
        .zip(&layers)
        .enumerate()
    {
        let mut chart = ChartBuilder::on(area)
            .caption(name, (FONT, 13))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(62)
            .build_cartesian_2d(x_range(plan), (lo..hi).log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(plan.study.max_epoch().min(12) as usize + 1)
            .x_label_formatter(&integral_label)
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .x_desc("epoch")
            .y_desc("gradient norm ‖∂L/∂W‖₂ (log)")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .map_err(e)?;
        for (ci, c) in plan.study.configs.iter().enumerate() {
            let Some(l) = c.layers.get(li) else { continue };
            draw_series(
                &mut chart,
                &l.grad_norm,
                colour(ci),
                second_cycle(ci),
                lo,
                false,
            )?;
            for d in &c.diverged {
                // The layer's last finite gradient norm in the diverged trial's epochs
                // is averaged into the line; mark where the trial ended.
                if d.last_finite_epoch == 0 {
                    continue;
                }
                if let Some(s) = l.grad_norm.0.get(d.last_finite_epoch as usize - 1)
                    && let Some(m) = s.mean()
                {
                    chart
                        .draw_series(std::iter::once(Cross::new(
                            (f64::from(d.last_finite_epoch), m.max(lo)),
                            6,
                            colour(ci).stroke_width(3),
                        )))
                        .map_err(e)?;
                }
            }
        }
    }
    let mut entries = plan.config_legend();
    entries.extend([
        Entry::other(
            EntryKind::Cross,
            BLACK,
            "diverged trial (last finite epoch)",
        ),
        Entry::other(
            EntryKind::Heading,
            BLACK,
            "a layer far below the others: vanishing",
        ),
    ]);
    draw_legend(legend, &entries)
}

fn change<DB: DrawingBackend>(
    plan: &Plan,
    panels: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
) -> R {
    let layers = plan.layers();
    let n = layers.len() as f64;
    let xr = -0.5..(n - 0.5);
    let layer_label = |x: &f64| -> String {
        if (x - x.round()).abs() < 1e-6 && *x >= 0.0 {
            layers.get(x.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let areas = grid(panels, 2, 2);
    let stats = |c: &Config, f: fn(&super::aggregate::LayerSeries) -> Stat| -> Vec<Stat> {
        c.layers.iter().map(f).collect()
    };
    let spread = |s: &Stat| {
        let m = s.mean().unwrap_or(f64::NAN);
        let sd = s.std().unwrap_or(0.0);
        [m - sd, m + sd, m]
    };
    // Left: ‖W_T − W_0‖ / ‖W_0‖ at the last epoch.
    let (lo, hi) = log_range(plan.study.configs.iter().flat_map(|c| {
        stats(c, |l| l.final_change)
            .iter()
            .flat_map(spread)
            .collect::<Vec<_>>()
    }));
    let mut chart = ChartBuilder::on(&areas[0])
        .caption("change since the initial weights, last epoch", (FONT, 13))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(62)
        .build_cartesian_2d(xr.clone(), (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(layers.len() + 1)
        .x_label_formatter(&layer_label)
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .x_desc("layer")
        .y_desc("‖W_T − W_0‖ / ‖W_0‖ (log)")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)?;
    for (ci, c) in plan.study.configs.iter().enumerate() {
        let col = colour(ci);
        let pts: Vec<(f64, Stat)> = stats(c, |l| l.final_change)
            .into_iter()
            .enumerate()
            .filter(|(_, s)| s.mean().is_some())
            .map(|(i, s)| (i as f64, s))
            .collect();
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|(x, s)| (*x, s.mean().unwrap_or(lo).max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(e)?;
        chart
            .draw_series(pts.iter().filter(|(_, s)| s.std().is_some()).map(|(x, s)| {
                let [a, b, m] = spread(s);
                ErrorBar::new_vertical(*x, a.max(lo), m.max(lo), b.max(lo), col.stroke_width(1), 8)
            }))
            .map_err(e)?;
    }
    // Right: the update ratio of the first epoch (hollow, dashed) and the last (filled).
    let (lo, hi) = log_range(plan.study.configs.iter().flat_map(|c| {
        c.layers
            .iter()
            .flat_map(|l| [l.first_update.mean(), l.last_update.mean()])
            .flatten()
            .collect::<Vec<_>>()
    }));
    let mut chart = ChartBuilder::on(&areas[1])
        .caption("update ratio: first epoch (○) vs last (●)", (FONT, 13))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(62)
        .build_cartesian_2d(xr, (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(layers.len() + 1)
        .x_label_formatter(&layer_label)
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .x_desc("layer")
        .y_desc("‖ΔW‖ / ‖W‖ over one epoch (log)")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)?;
    for (ci, c) in plan.study.configs.iter().enumerate() {
        let col = colour(ci);
        for first in [true, false] {
            let line: Vec<(f64, f64)> = c
                .layers
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    let s = if first { l.first_update } else { l.last_update };
                    Some((i as f64, s.mean()?.max(lo)))
                })
                .collect();
            if first {
                chart
                    .draw_series(DashedLineSeries::new(
                        line.clone(),
                        5,
                        4,
                        col.stroke_width(1),
                    ))
                    .map_err(e)?;
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 4, col.stroke_width(2))))
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(LineSeries::new(line.clone(), col.stroke_width(2)))
                    .map_err(e)?;
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 4, col.filled())))
                    .map_err(e)?;
            }
        }
    }
    let mut entries = plan.config_legend();
    entries.extend([
        Entry::other(EntryKind::Heading, BLACK, ""),
        Entry::other(EntryKind::Circle(false), BLACK, "first epoch"),
        Entry::other(EntryKind::Circle(true), BLACK, "last epoch"),
        Entry::other(
            EntryKind::Heading,
            BLACK,
            "bars: ± std over seeds; a layer near 1e-3 or",
        ),
        Entry::other(EntryKind::Heading, BLACK, "below barely moved (frozen)"),
    ]);
    draw_legend(legend, &entries)
}

fn accuracy<DB: DrawingBackend>(
    plan: &Plan,
    panels: &DrawingArea<DB, Shift>,
    legend: &DrawingArea<DB, Shift>,
) -> R {
    let label_w = accuracy_label_width(plan);
    let (w, _) = panels.dim_in_pixel();
    let (left, right) = panels.split_horizontally(w / 2);
    // Left: configurations, best mean test accuracy first.
    let mut order: Vec<(usize, &Config)> = plan.study.configs.iter().enumerate().collect();
    order.sort_by(|a, b| {
        let m = |c: &Config| c.final_test_accuracy.mean().unwrap_or(-1.0);
        m(b.1).total_cmp(&m(a.1))
    });
    let labels: Vec<String> = order
        .iter()
        .map(|(_, c)| with_diverged(plan.config_label(c), c))
        .collect();
    let n = order.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "final test accuracy, mean ± std over succeeded seeds",
            (FONT, 13),
        )
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..100f64, (0..n - 1).into_segmented())
        .map_err(e)?;
    let seg_label = |labels: &[String], v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n as usize)
        .y_label_formatter(&|v| seg_label(&labels, v))
        .x_desc("test accuracy (%)")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)?;
    for (row, (ci, c)) in order.iter().enumerate() {
        let row = row as i32;
        let col = colour(*ci);
        match c.final_test_accuracy.mean() {
            Some(m) => {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (100.0 * m, SegmentValue::Exact(row + 1)),
                    ],
                    col.mix(0.85).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                chart.draw_series(std::iter::once(bar)).map_err(e)?;
                if let Some(sd) = c.final_test_accuracy.std() {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_horizontal(
                            SegmentValue::CenterOf(row),
                            (100.0 * (m - sd)).max(0.0),
                            100.0 * m,
                            (100.0 * (m + sd)).min(100.0),
                            BLACK.stroke_width(1),
                            8,
                        )))
                        .map_err(e)?;
                }
            }
            None => {
                // No succeeded seed (all diverged): a × at 0.
                chart
                    .draw_series(std::iter::once(Cross::new(
                        (1.5, SegmentValue::CenterOf(row)),
                        6,
                        col.stroke_width(3),
                    )))
                    .map_err(e)?;
            }
        }
    }
    // Right: train vs test per regulariser (the overfitting view).
    let groups = plan.study.accuracy_by("regularization");
    let glabels: Vec<String> = groups
        .iter()
        .flat_map(|(l, _, _)| {
            let l = l.clone().unwrap_or_else(|| "all (not varied)".into());
            [format!("{l} train"), format!("{l} test")]
        })
        .collect();
    let gn = (groups.len() * 2).max(1) as i32;
    let caption = if plan.study.axis("regularization").is_some() {
        "train vs test accuracy per regulariser"
    } else {
        "train vs test accuracy (regularisation not varied)"
    };
    let mut chart = ChartBuilder::on(&right)
        .caption(caption, (FONT, 13))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(label_w.min(220))
        .build_cartesian_2d(0f64..100f64, (0..gn - 1).into_segmented())
        .map_err(e)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(gn as usize)
        .y_label_formatter(&|v| seg_label(&glabels, v))
        .x_desc("accuracy (%), final epoch")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)?;
    for (g, (_, train, test)) in groups.iter().enumerate() {
        for (k, (s, col)) in [(train, PALETTE[0]), (test, PALETTE[1])]
            .into_iter()
            .enumerate()
        {
            let row = (2 * g + k) as i32;
            let Some(m) = s.mean() else { continue };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row)),
                    (100.0 * m, SegmentValue::Exact(row + 1)),
                ],
                col.filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            chart.draw_series(std::iter::once(bar)).map_err(e)?;
            if let Some(sd) = s.std() {
                chart
                    .draw_series(std::iter::once(ErrorBar::new_horizontal(
                        SegmentValue::CenterOf(row),
                        (100.0 * (m - sd)).max(0.0),
                        100.0 * m,
                        (100.0 * (m + sd)).min(100.0),
                        BLACK.stroke_width(1),
                        8,
                    )))
                    .map_err(e)?;
            }
        }
    }
    let mut entries = vec![
        Entry::other(EntryKind::Heading, BLACK, "left: colour = configuration"),
        Entry::other(EntryKind::Cross, BLACK, "no succeeded seed (diverged)"),
        Entry::other(EntryKind::Heading, BLACK, "right:"),
        Entry::other(EntryKind::Box, PALETTE[0], "train accuracy"),
        Entry::other(EntryKind::Box, PALETTE[1], "test accuracy"),
        Entry::other(
            EntryKind::Heading,
            BLACK,
            "error bars: ± std over succeeded trials",
        ),
        Entry::other(
            EntryKind::Heading,
            BLACK,
            "a wide train − test gap: overfitting",
        ),
    ];
    let skipped: u32 = plan
        .study
        .configs
        .iter()
        .map(|c| c.trials - c.succeeded)
        .sum();
    if skipped > 0 {
        entries.push(Entry::other(
            EntryKind::Heading,
            BLACK,
            &format!("{skipped} diverged trial(s) counted in no bar"),
        ));
    }
    draw_legend(legend, &entries)
}
