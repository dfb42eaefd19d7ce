//! The built-in, procedurally generated datasets (`synthetic:<name>`): 32×32 grey images
//! of ten hand-drawn-looking glyphs, made on the fly from a fixed seed per name, so no
//! file is needed and every run on every machine with the same build sees the same
//! pixels.
//!
//! # What the glyphs look like
//!
//! Each class is a fixed template of pen strokes (straight segments and elliptic arcs)
//! in a unit square, shaped like a letter or digit:
//!
//! | label | glyph | strokes                                                   |
//! |-------|-------|-----------------------------------------------------------|
//! | 0     | `O`   | a closed ellipse                                          |
//! | 1     | `1`   | a vertical bar with a short flag at its top               |
//! | 2     | `7`   | a top bar and a long diagonal                             |
//! | 3     | `Q`   | the `O` plus a short tail at the lower right              |
//! | 4     | `L`   | a vertical bar and a bottom bar                           |
//! | 5     | `T`   | a top bar and a central vertical bar                      |
//! | 6     | `X`   | two crossing diagonals                                    |
//! | 7     | `C`   | the `O` with its right quarter missing                    |
//! | 8     | `H`   | two vertical bars joined by a middle bar                  |
//! | 9     | `Z`   | the `7` plus a bottom bar                                 |
//!
//! Every sample redraws its class's template with its own randomness: each control
//! point is jittered by up to ±0.08 of the canvas (arcs get jittered centre, radii and
//! end angles), then the whole glyph is scaled by 0.7–1.05, rotated by up to ±15° and
//! shifted by up to ±4.5 px. The pen is 1.2–2.4 px wide and is rendered with
//! anti-aliasing from each pixel's distance to the nearest stroke: bright ink (255) on a
//! dark background (0), plus Gaussian pixel noise (σ = 20 of 255), clamped to 0–255.
//! About one image in eleven touches the border, as in a loosely cropped scan.
//!
//! # Why
//!
//! The project's tests and examples need a dataset that is quick to make yet behaves
//! like a real image task. Several pairs of classes share strokes (`O`/`Q`/`C`, `7`/`Z`,
//! `7`/`T`, `1`/`T`, `L`/`H`, `L`/`Z`, `X`/`Z`), and the per-sample shift, rotation and
//! jitter move the strokes by several pixels, so no single pixel identifies a class.
//! On `glyphs`, a nearest-class-mean rule gets about 54% test accuracy, softmax
//! regression about 72%, and a two-hidden-layer ReLU perceptron about 92% (chance is
//! 10%). The placement noise is what separates the linear models from the non-linear
//! one: with ±3 px shifts and ±0.06 jitter even softmax regression reached 95%.
//!
//! That makes the data hard enough to show the classic failures — a deep (8 hidden
//! layers) sigmoid network trained with plain SGD stays at chance because its gradients
//! vanish, while ReLU with He initialisation or batch normalisation learns it — and
//! `glyphs-small` has so few training images that an over-parameterised network fits
//! its training split perfectly yet stays near 60% on test, leaving plenty of room for
//! regularisation to narrow the gap.
//!
//! # Names
//!
//! | name           | training pool        | test                  |
//! |----------------|----------------------|-----------------------|
//! | `glyphs`       | 6,000 (600 a class)  | 2,000 (200 a class)   |
//! | `glyphs-small` | 500 (50 a class)     | 2,000 (200 a class)   |
//! | `glyphs-tiny`  | 1,000 (100 a class)  | 500 (50 a class)      |
//!
//! The validation split is carved out of the training pool by
//! [`Dataset::from_pool`]. Pool and test images come from different random streams of
//! the name's seed, so no test image repeats a training image.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{DataError, Dataset, ImageShape, Split};

/// The built-in dataset names, as given after `synthetic:`: the spec's list, which trial
/// files and sweeps are checked against before any worker sees them.
pub const NAMES: &[&str] = &gradsweep_spec::dataset::BUILT_IN;

/// What each label draws, indexed by label (`CLASS_NAMES[3]` is `"Q"`).
pub const CLASS_NAMES: [&str; CLASSES] = ["O", "1", "7", "Q", "L", "T", "X", "C", "H", "Z"];

/// Number of classes in every built-in dataset; labels are `0..CLASSES`.
pub const CLASSES: usize = 10;

/// The shape of every built-in image: one grey channel, 32×32.
pub const SHAPE: ImageShape = ImageShape {
    channels: 1,
    height: SIDE,
    width: SIDE,
};

/// Side of the square canvas, in pixels.
const SIDE: usize = 32;
/// Pixels per image.
const PIXELS: usize = SIDE * SIDE;

/// Random stream of the training pool (the name's seed picks the key).
const POOL_STREAM: u64 = 0;
/// Random stream of the test split.
const TEST_STREAM: u64 = 1;

/// Largest jitter of a control point, as a fraction of the canvas.
const POINT_JITTER: f32 = 0.08;
/// Largest jitter of an arc's radius, as a fraction of the canvas.
const RADIUS_JITTER: f32 = 0.04;
/// Largest jitter of an arc's start and end angles, in degrees.
const ANGLE_JITTER: f32 = 10.0;
/// Range of the global scale factor.
const SCALE: (f32, f32) = (0.7, 1.05);
/// Largest global rotation, in degrees.
const ROTATION: f32 = 15.0;
/// Largest global shift, in pixels.
const SHIFT: f32 = 4.5;
/// Range of the pen width, in pixels.
const THICKNESS: (f32, f32) = (1.2, 2.4);
/// Standard deviation of the pixel noise, on the 0–255 scale.
const NOISE_SIGMA: f32 = 20.0;
/// Longest arc piece when arcs are flattened into segments, in degrees.
const ARC_STEP: f32 = 15.0;

/// One built-in dataset.
struct Spec {
    name: &'static str,
    pool_per_class: usize,
    test_per_class: usize,
    seed: u64,
}

const SPECS: [Spec; 3] = [
    Spec {
        name: "glyphs",
        pool_per_class: 600,
        test_per_class: 200,
        seed: 0x6c79_7068_7330_0001,
    },
    Spec {
        name: "glyphs-small",
        pool_per_class: 50,
        test_per_class: 200,
        seed: 0x6c79_7068_7330_0002,
    },
    Spec {
        name: "glyphs-tiny",
        pool_per_class: 100,
        test_per_class: 50,
        seed: 0x6c79_7068_7330_0003,
    },
];

/// Loads the built-in dataset `name` (one of [`NAMES`]), carving `val_fraction` of its
/// training pool into the validation split (see [`Dataset::from_pool`]; the fraction is
/// clamped to 0–1). The result is named `synthetic:<name>`.
///
/// # Errors
///
/// [`DataError::UnknownSynthetic`] when `name` is not one of [`NAMES`].
pub fn load(name: &str, val_fraction: f64) -> Result<Dataset, DataError> {
    let spec =
        SPECS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DataError::UnknownSynthetic {
                name: name.to_string(),
                known: NAMES.join(", "),
            })?;
    let pool = generate(spec.seed, POOL_STREAM, spec.pool_per_class);
    let test = generate(spec.seed, TEST_STREAM, spec.test_per_class);
    let val_fraction = if val_fraction.is_nan() {
        0.0
    } else {
        val_fraction.clamp(0.0, 1.0)
    };
    Ok(Dataset::from_pool(
        &format!("synthetic:{name}"),
        SHAPE,
        CLASSES,
        pool,
        test,
        val_fraction,
    ))
}

/// Draws `per_class` images of every class from stream `stream` of `seed`, labels
/// cycling 0, 1, …, 9, 0, 1, ….
fn generate(seed: u64, stream: u64, per_class: usize) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let n = per_class * CLASSES;
    let mut split = Split {
        images: vec![0; n * PIXELS],
        labels: Vec::with_capacity(n),
    };
    let mut canvas = Canvas::new();
    for (i, image) in split.images.chunks_exact_mut(PIXELS).enumerate() {
        let class = i % CLASSES;
        canvas.clear();
        draw(&TEMPLATES[class], &mut rng, &mut canvas);
        for (out, &ink) in image.iter_mut().zip(&canvas.coverage) {
            let noise: f32 = rng.sample(StandardNormal);
            *out = (255.0 * ink + NOISE_SIGMA * noise)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        split.labels.push(class as u8);
    }
    split
}

/// A pen stroke of a template, in unit-square coordinates (x right, y down).
enum Stroke {
    /// A straight segment between two of the template's points (by index), so strokes
    /// that share a point stay joined when the point is jittered.
    Line(usize, usize),
    /// An elliptic arc around one of the template's points (by index): radii `rx`, `ry`,
    /// from angle `start` through `sweep` degrees (positive turns from +x towards +y).
    Arc {
        centre: usize,
        rx: f32,
        ry: f32,
        start: f32,
        sweep: f32,
    },
}

/// One class's glyph: control points and the strokes drawn between them.
struct Template {
    points: &'static [(f32, f32)],
    strokes: &'static [Stroke],
}

/// The ring shared by `O`, `Q` and (opened) `C`.
const RING_RX: f32 = 0.22;
const RING_RY: f32 = 0.31;

/// The templates, indexed by label (see the module documentation).
const TEMPLATES: [Template; CLASSES] = [
    // 0: O
    Template {
        points: &[(0.5, 0.5)],
        strokes: &[Stroke::Arc {
            centre: 0,
            rx: RING_RX,
            ry: RING_RY,
            start: 0.0,
            sweep: 360.0,
        }],
    },
    // 1: 1
    Template {
        points: &[(0.53, 0.18), (0.53, 0.82), (0.37, 0.33)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(2, 0)],
    },
    // 2: 7
    Template {
        points: &[(0.27, 0.2), (0.73, 0.2), (0.33, 0.82)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(1, 2)],
    },
    // 3: Q
    Template {
        points: &[(0.5, 0.5), (0.56, 0.64), (0.76, 0.84)],
        strokes: &[
            Stroke::Arc {
                centre: 0,
                rx: RING_RX,
                ry: RING_RY,
                start: 0.0,
                sweep: 360.0,
            },
            Stroke::Line(1, 2),
        ],
    },
    // 4: L
    Template {
        points: &[(0.3, 0.18), (0.3, 0.82), (0.72, 0.82)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(1, 2)],
    },
    // 5: T
    Template {
        points: &[(0.25, 0.2), (0.75, 0.2), (0.5, 0.2), (0.5, 0.82)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(2, 3)],
    },
    // 6: X
    Template {
        points: &[(0.27, 0.18), (0.73, 0.82), (0.73, 0.18), (0.27, 0.82)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(2, 3)],
    },
    // 7: C
    Template {
        points: &[(0.52, 0.5)],
        strokes: &[Stroke::Arc {
            centre: 0,
            rx: RING_RX,
            ry: RING_RY,
            start: 45.0,
            sweep: 270.0,
        }],
    },
    // 8: H
    Template {
        points: &[
            (0.28, 0.18),
            (0.28, 0.5),
            (0.28, 0.82),
            (0.72, 0.18),
            (0.72, 0.5),
            (0.72, 0.82),
        ],
        strokes: &[
            Stroke::Line(0, 1),
            Stroke::Line(1, 2),
            Stroke::Line(3, 4),
            Stroke::Line(4, 5),
            Stroke::Line(1, 4),
        ],
    },
    // 9: Z
    Template {
        points: &[(0.27, 0.2), (0.73, 0.2), (0.33, 0.82), (0.74, 0.82)],
        strokes: &[Stroke::Line(0, 1), Stroke::Line(1, 2), Stroke::Line(2, 3)],
    },
];

/// Most control points any template has.
const MAX_POINTS: usize = 8;

/// A uniform sample from `lo..hi`.
fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// A uniform sample from `-half..half`.
fn symmetric(rng: &mut ChaCha8Rng, half: f32) -> f32 {
    uniform(rng, -half, half)
}

/// The per-sample placement of a glyph: unit square → pixel coordinates.
struct Placement {
    scale: f32,
    cos: f32,
    sin: f32,
    shift: (f32, f32),
}

impl Placement {
    fn random(rng: &mut ChaCha8Rng) -> Placement {
        let scale = uniform(rng, SCALE.0, SCALE.1) * SIDE as f32;
        let angle = symmetric(rng, ROTATION).to_radians();
        let centre = SIDE as f32 / 2.0;
        Placement {
            scale,
            cos: angle.cos(),
            sin: angle.sin(),
            shift: (
                centre + symmetric(rng, SHIFT),
                centre + symmetric(rng, SHIFT),
            ),
        }
    }

    /// Pixel coordinates (pixel `(c, r)` covers `c..c+1 × r..r+1`) of a unit-square point.
    fn apply(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (x, y) = (x - 0.5, y - 0.5);
        (
            self.shift.0 + self.scale * (self.cos * x - self.sin * y),
            self.shift.1 + self.scale * (self.sin * x + self.cos * y),
        )
    }
}

/// Draws one randomised instance of `template` onto `canvas`.
fn draw(template: &Template, rng: &mut ChaCha8Rng, canvas: &mut Canvas) {
    let mut points = [(0.0f32, 0.0f32); MAX_POINTS];
    for (p, &(x, y)) in points.iter_mut().zip(template.points) {
        *p = (
            x + symmetric(rng, POINT_JITTER),
            y + symmetric(rng, POINT_JITTER),
        );
    }
    let place = Placement::random(rng);
    let half_width = uniform(rng, THICKNESS.0, THICKNESS.1) / 2.0;
    for stroke in template.strokes {
        match *stroke {
            Stroke::Line(a, b) => {
                canvas.segment(place.apply(points[a]), place.apply(points[b]), half_width);
            }
            Stroke::Arc {
                centre,
                rx,
                ry,
                start,
                sweep,
            } => {
                let (cx, cy) = points[centre];
                let rx = rx + symmetric(rng, RADIUS_JITTER);
                let ry = ry + symmetric(rng, RADIUS_JITTER);
                // A closed ring stays closed; an open arc gets jittered ends.
                let (start, sweep) = if sweep >= 360.0 {
                    (start, sweep)
                } else {
                    let s = start + symmetric(rng, ANGLE_JITTER);
                    (s, sweep + symmetric(rng, ANGLE_JITTER))
                };
                let pieces = (sweep.abs() / ARC_STEP).ceil().max(1.0) as usize;
                let at = |k: usize| {
                    let a = (start + sweep * k as f32 / pieces as f32).to_radians();
                    place.apply((cx + rx * a.cos(), cy + ry * a.sin()))
                };
                let mut prev = at(0);
                for k in 1..=pieces {
                    let next = at(k);
                    canvas.segment(prev, next, half_width);
                    prev = next;
                }
            }
        }
    }
}

/// Ink coverage (0–1) of each pixel, row by row.
struct Canvas {
    coverage: Vec<f32>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            coverage: vec![0.0; PIXELS],
        }
    }

    fn clear(&mut self) {
        self.coverage.fill(0.0);
    }

    /// Inks the segment `a`–`b` with a pen of half-width `half_width` (pixels): a
    /// pixel whose centre lies at distance `d` from the segment gets coverage
    /// `half_width + 0.5 − d`, clamped to 0–1, which gives anti-aliased edges.
    fn segment(&mut self, a: (f32, f32), b: (f32, f32), half_width: f32) {
        let reach = half_width + 0.5;
        let range = |lo: f32, hi: f32| {
            let first = (lo - reach).floor().max(0.0) as usize;
            let last = ((hi + reach).ceil().max(0.0) as usize).min(SIDE);
            first..last
        };
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        for row in range(a.1.min(b.1), a.1.max(b.1)) {
            let py = row as f32 + 0.5;
            for col in range(a.0.min(b.0), a.0.max(b.0)) {
                let px = col as f32 + 0.5;
                let (ex, ey) = (px - a.0, py - a.1);
                let t = if len2 > 1e-12 {
                    ((ex * dx + ey * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (fx, fy) = (ex - t * dx, ey - t * dy);
                let ink = (reach - (fx * fx + fy * fy).sqrt()).clamp(0.0, 1.0);
                let cell = &mut self.coverage[row * SIDE + col];
                if ink > *cell {
                    *cell = ink;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// `glyphs` with a tenth held out, made once for all tests.
    fn glyphs() -> &'static Dataset {
        static DATA: OnceLock<Dataset> = OnceLock::new();
        DATA.get_or_init(|| match load("glyphs", 0.1) {
            Ok(d) => d,
            Err(e) => panic!("glyphs failed to load: {e}"),
        })
    }

    fn load_ok(name: &str, val_fraction: f64) -> Dataset {
        match load(name, val_fraction) {
            Ok(d) => d,
            Err(e) => panic!("{name} failed to load: {e}"),
        }
    }

    fn counts(labels: &[u8]) -> [usize; CLASSES] {
        let mut c = [0; CLASSES];
        for &l in labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Per-class mean images of `split`, 0–255 scale.
    fn class_means(split: &Split) -> Vec<Vec<f64>> {
        let mut sums = vec![vec![0.0f64; PIXELS]; CLASSES];
        for (image, &label) in split.images.chunks_exact(PIXELS).zip(&split.labels) {
            for (s, &p) in sums[label as usize].iter_mut().zip(image) {
                *s += p as f64;
            }
        }
        let n = counts(&split.labels);
        for (sum, &count) in sums.iter_mut().zip(&n) {
            for s in sum.iter_mut() {
                *s /= count.max(1) as f64;
            }
        }
        sums
    }

    fn distance2(a: &[f64], b: impl Iterator<Item = f64>) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn templates_are_well_formed() {
        for (class, t) in TEMPLATES.iter().enumerate() {
            assert!(t.points.len() <= MAX_POINTS, "class {class}");
            for stroke in t.strokes {
                let used = match *stroke {
                    Stroke::Line(a, b) => a.max(b),
                    Stroke::Arc { centre, .. } => centre,
                };
                assert!(used < t.points.len(), "class {class}");
            }
        }
    }

    #[test]
    fn loads_are_identical() {
        let a = load_ok("glyphs-tiny", 0.1);
        let b = load_ok("glyphs-tiny", 0.1);
        assert_eq!(a.train, b.train);
        assert_eq!(a.val, b.val);
        assert_eq!(a.test, b.test);
        assert_eq!(a.name, "synthetic:glyphs-tiny");
        assert_eq!(a.shape, SHAPE);
        assert_eq!(a.classes, 10);
    }

    #[test]
    fn names_seed_and_streams_differ() {
        let tiny = load_ok("glyphs-tiny", 0.0);
        let small = load_ok("glyphs-small", 0.0);
        // Same position in the cycle (same class) but different names or streams.
        assert_ne!(tiny.test.images[..PIXELS], small.test.images[..PIXELS]);
        let pool_first = tiny.train.select(&[0], PIXELS);
        for image in tiny.test.images.chunks_exact(PIXELS) {
            assert_ne!(image, &pool_first.images[..]);
        }
    }

    #[test]
    fn every_name_the_spec_accepts_is_generated_here() {
        let generated: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        assert_eq!(generated, NAMES);
    }

    #[test]
    fn sizes_and_balance() {
        let expect = [
            ("glyphs", 5400, 600, 2000),
            ("glyphs-small", 450, 50, 2000),
            ("glyphs-tiny", 900, 100, 500),
        ];
        assert_eq!(NAMES.len(), expect.len());
        for (name, train, val, test) in expect {
            assert!(NAMES.contains(&name));
            let d = if name == "glyphs" {
                glyphs().clone()
            } else {
                load_ok(name, 0.1)
            };
            assert_eq!(
                (d.train.len(), d.val.len(), d.test.len()),
                (train, val, test)
            );
            for split in [&d.train, &d.val, &d.test] {
                assert_eq!(split.images.len(), split.len() * PIXELS, "{name}");
                assert!(split.labels.iter().all(|&l| (l as usize) < CLASSES));
            }
            let mut pool = counts(&d.train.labels);
            for (p, v) in pool.iter_mut().zip(counts(&d.val.labels)) {
                *p += v;
            }
            assert_eq!(pool, [(train + val) / CLASSES; CLASSES], "{name} pool");
            assert_eq!(counts(&d.test.labels), [test / CLASSES; CLASSES], "{name}");
        }
    }

    #[test]
    fn val_fraction_is_clamped() {
        let d = load_ok("glyphs-tiny", 1.5);
        assert_eq!((d.train.len(), d.val.len()), (0, 1000));
        let d = load_ok("glyphs-tiny", -0.5);
        assert_eq!((d.train.len(), d.val.len()), (1000, 0));
        let d = load_ok("glyphs-tiny", f64::NAN);
        assert_eq!((d.train.len(), d.val.len()), (1000, 0));
    }

    #[test]
    fn pixels_are_sane() {
        let d = glyphs();
        let mut total = 0u64;
        let mut count = 0u64;
        for split in [&d.train, &d.val, &d.test] {
            for image in split.images.chunks_exact(PIXELS) {
                let dark = image.iter().filter(|&&p| p < 64).count();
                let ink = image.iter().filter(|&&p| p >= 160).count();
                assert!(dark >= PIXELS * 6 / 10, "only {dark} dark pixels");
                assert!(ink >= 12, "only {ink} inked pixels");
                total += image.iter().map(|&p| p as u64).sum::<u64>();
                count += PIXELS as u64;
            }
        }
        let mean = total as f64 / count as f64;
        assert!((15.0..80.0).contains(&mean), "mean pixel {mean}");
        let stats = d.channel_stats();
        assert_eq!(stats.len(), 1);
        assert!(stats[0].1 > 0.1, "pixel spread {}", stats[0].1);
    }

    #[test]
    fn unknown_name_lists_known_names() {
        match load("glyph", 0.1) {
            Err(DataError::UnknownSynthetic { name, known }) => {
                assert_eq!(name, "glyph");
                assert_eq!(known, "glyphs, glyphs-small, glyphs-tiny");
            }
            other => panic!("expected UnknownSynthetic, got {other:?}"),
        }
    }

    fn rms(a: &[f64], b: &[f64]) -> f64 {
        (distance2(a, b.iter().copied()) / a.len() as f64).sqrt()
    }

    #[test]
    fn class_means_differ() {
        let train = &glyphs().train;
        let means = class_means(train);
        let mut closest = f64::INFINITY;
        for a in 0..CLASSES {
            for b in a + 1..CLASSES {
                let d = rms(&means[a], &means[b]);
                assert!(d > 6.0, "classes {a} and {b}: rms difference {d}");
                closest = closest.min(d);
            }
        }
        // The gap between classes is more than sampling noise: the means of two halves of
        // one class differ by less than any two classes do.
        let halves = |parity: usize| {
            let keep: Vec<usize> = (0..train.len()).filter(|i| i % 2 == parity).collect();
            class_means(&train.select(&keep, PIXELS))
        };
        let (even, odd) = (halves(0), halves(1));
        for c in 0..CLASSES {
            let d = rms(&even[c], &odd[c]);
            assert!(
                d < closest,
                "class {c}: halves differ by {d}, classes by {closest}"
            );
        }
    }

    #[test]
    fn nearest_class_mean_beats_chance_but_is_not_perfect() {
        let d = glyphs();
        let means = class_means(&d.train);
        let correct = d
            .test
            .images
            .chunks_exact(PIXELS)
            .zip(&d.test.labels)
            .filter(|(image, label)| {
                let pixels = || image.iter().map(|&p| p as f64);
                let best = (0..CLASSES).min_by(|&a, &b| {
                    distance2(&means[a], pixels()).total_cmp(&distance2(&means[b], pixels()))
                });
                best == Some(**label as usize)
            })
            .count();
        let accuracy = correct as f64 / d.test.len() as f64;
        assert!(
            accuracy > 0.4 && accuracy < 0.98,
            "nearest-class-mean accuracy {accuracy}"
        );
    }
}
