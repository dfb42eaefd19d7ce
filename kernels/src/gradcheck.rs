//! Numerical gradient checking with PyTorch `gradcheck`'s conventions.
//!
//! The checker is told which entries to check and their analytic partial derivatives;
//! it asks for the loss with one entry moved by ±eps and compares the central
//! difference with the analytic value. Any differentiable scalar function will do:
//! one op under a random projection, or a whole network's loss.

use serde::Serialize;

/// The tolerances of a check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Step of the central difference.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric value).
    pub rtol: f64,
}

impl Tolerance {
    /// PyTorch `gradcheck` in float64: eps 1e-6, atol 1e-5, rtol 1e-3.
    pub const F64: Tolerance = Tolerance {
        eps: 1e-6,
        atol: 1e-5,
        rtol: 1e-3,
    };

    /// For an f32 gradient (a device's) against the f64 numeric one: f32 carries about
    /// seven digits, and a deep net's gradient sums many rounded terms.
    pub const F32: Tolerance = Tolerance {
        eps: 1e-6,
        atol: 1e-5,
        rtol: 1e-2,
    };

    /// Whether `analytic` is close enough to `numeric`.
    pub fn accepts(&self, analytic: f64, numeric: f64) -> bool {
        (analytic - numeric).abs() <= self.atol + self.rtol * numeric.abs()
    }
}

/// One checked entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntryCheck {
    /// Index of the entry in the checked parameter.
    pub index: usize,
    /// Analytic partial derivative.
    pub analytic: f64,
    /// Central-difference estimate.
    pub numeric: f64,
}

impl EntryCheck {
    /// |analytic − numeric|.
    pub fn abs_error(&self) -> f64 {
        (self.analytic - self.numeric).abs()
    }

    /// |analytic − numeric| / max(|numeric|, `floor`): relative where the derivative is
    /// large, and bounded where it is near zero and relative error means nothing.
    pub fn rel_error(&self, floor: f64) -> f64 {
        self.abs_error() / self.numeric.abs().max(floor)
    }
}

/// The outcome of checking some entries of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradCheck {
    /// Entries checked.
    pub checked: usize,
    /// Largest absolute error.
    pub max_abs_error: f64,
    /// Largest relative error, relative to max(|numeric|, atol).
    pub max_rel_error: f64,
    /// True when every entry was within tolerance.
    pub passed: bool,
    /// The first entry outside tolerance, if any.
    pub worst: Option<EntryCheck>,
    /// Tolerances used.
    pub tolerance: Tolerance,
}

/// Central-difference estimates `(loss_at(i, +eps) − loss_at(i, −eps)) / 2·eps` of the
/// partial derivatives at `indices`; `loss_at(index, delta)` is the loss with entry
/// `index` moved by `delta` (and restored).
pub fn numeric<E>(
    indices: &[usize],
    eps: f64,
    mut loss_at: impl FnMut(usize, f64) -> Result<f64, E>,
) -> Result<Vec<f64>, E> {
    indices
        .iter()
        .map(|&i| Ok((loss_at(i, eps)? - loss_at(i, -eps)?) / (2.0 * eps)))
        .collect()
}

/// Judges analytic against numeric derivatives under `tolerance`.
pub fn compare(entries: &[EntryCheck], tolerance: Tolerance) -> GradCheck {
    let mut result = GradCheck {
        checked: entries.len(),
        max_abs_error: 0.0,
        max_rel_error: 0.0,
        passed: true,
        worst: None,
        tolerance,
    };
    let mut worst_excess = f64::NEG_INFINITY;
    for entry in entries {
        result.max_abs_error = result.max_abs_error.max(entry.abs_error());
        result.max_rel_error = result.max_rel_error.max(entry.rel_error(tolerance.atol));
        // NaN on either side fails the check.
        if !tolerance.accepts(entry.analytic, entry.numeric) {
            result.passed = false;
            let excess =
                entry.abs_error() - (tolerance.atol + tolerance.rtol * entry.numeric.abs());
            if result.worst.is_none() || excess > worst_excess || excess.is_nan() {
                worst_excess = excess;
                result.worst = Some(*entry);
            }
        }
    }
    result
}

/// Checks `entries` (index, analytic derivative) against central differences of
/// `loss_at(index, delta)`, the loss with entry `index` moved by `delta` (and restored).
pub fn check<E>(
    entries: &[(usize, f64)],
    tolerance: Tolerance,
    loss_at: impl FnMut(usize, f64) -> Result<f64, E>,
) -> Result<GradCheck, E> {
    let indices: Vec<usize> = entries.iter().map(|&(i, _)| i).collect();
    let numeric = numeric(&indices, tolerance.eps, loss_at)?;
    let checked: Vec<EntryCheck> = entries
        .iter()
        .zip(numeric)
        .map(|(&(index, analytic), numeric)| EntryCheck {
            index,
            analytic,
            numeric,
        })
        .collect();
    Ok(compare(&checked, tolerance))
}

/// The tolerances of a directional check: the loss's derivative along random unit
/// directions of one parameter tensor, measured by a five-point central difference,
/// against the analytic gradient's projection on them.
///
/// The criterion is the relative error of CS231n's gradient-check notes (Karpathy,
/// "Gradient checks", <https://cs231n.github.io/neural-networks-3/#gradcheck>):
/// |a − n| / max(|a|, |n|), there taken entry by entry, here over `directions` random
/// unit directions v at once (a and n the vectors of g·v and of the numeric derivatives):
/// ‖a − n‖ / max(‖a‖, ‖n‖). It is measured against the tensor's own gradient scale, so a
/// gradient that is wrong passes no more easily for being small: twice the truth scores
/// 0.5, zero scores 1. The notes call more than 1e-4 "uncomfortable" for objectives
/// without kinks and "usually okay" with them (ReLU); [`Directional::F64`] fails above
/// 1e-4 in double precision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Directional {
    /// Random unit directions per tensor.
    pub directions: usize,
    /// The loss change the step aims at: h = `target` / RMS(g), so that f64's rounding
    /// of the loss (≈ 1e-16 of it) stays ≈ 1e-7 of the change whatever the gradient's
    /// scale, and a large gradient (a ReLU layer) gets a small step that crosses few
    /// kinks.
    pub target: f64,
    /// The smallest and largest step per entry (RMS): h is kept within
    /// [min, max]·√(entries).
    pub step_per_entry: (f64, f64),
    /// The largest relative error that passes.
    pub rtol: f64,
    /// Directional derivatives (‖a‖ and ‖n‖) both below this count as zero and pass: a
    /// tensor the loss does not depend on (a bias before batch norm, a dead ReLU layer).
    pub zero: f64,
}

impl Directional {
    /// In f64: 4 directions, loss change 1e-9, 1e-8 to 1e-2 per entry, relative error
    /// ≤ 1e-4 (CS231n), below 1e-13 both count as zero.
    pub const F64: Directional = Directional {
        directions: 4,
        target: 1e-9,
        step_per_entry: (1e-8, 1e-2),
        rtol: 1e-4,
        zero: 1e-13,
    };

    /// The step along a unit direction of a tensor whose analytic gradient is `g`.
    pub fn step(&self, g: &[f64]) -> f64 {
        let n = g.len().max(1) as f64;
        let rms = (g.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        let (lo, hi) = (
            self.step_per_entry.0 * n.sqrt(),
            self.step_per_entry.1 * n.sqrt(),
        );
        if rms.is_finite() && rms > 0.0 {
            (self.target / rms).clamp(lo, hi)
        } else {
            hi
        }
    }
}

/// The outcome of a directional check of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectionalCheck {
    /// g·v for each direction v (the analytic gradient projected).
    pub analytic: Vec<f64>,
    /// The numeric derivative of the loss along each v.
    pub numeric: Vec<f64>,
    /// ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖); 0 when both count as zero.
    pub rel_error: f64,
    /// Whether `rel_error` ≤ the tolerance's `rtol` (NaN fails).
    pub passed: bool,
}

/// A random unit vector of `len` entries (Gaussian entries, normalised) from `seed`: a
/// direction independent of the gradient it checks. Held in f32 (the check uses the
/// same rounded entries on both sides), so that a direction costs a tensor's size in
/// f32, not f64.
pub fn unit_direction(len: usize, seed: u64) -> Vec<f32> {
    // SplitMix64 → Box–Muller: enough randomness for test directions, no dependency.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let v: Vec<f64> = (0..len)
        .map(|_| {
            let (u1, u2) = (next(), next());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    v.iter().map(|x| (x / norm) as f32).collect()
}

/// Checks `analytic` (a whole tensor's gradient) along [`Directional::directions`]
/// random unit directions drawn from `seed` (one at a time): `loss_along(v, t)` is the
/// loss with the tensor moved by t·v (and restored). The derivative along v is the
/// five-point central difference (−f(2h) + 8f(h) − 8f(−h) + f(−2h)) / 12h, h =
/// [`Directional::step`] (it depends on the analytic gradient only through its RMS,
/// which changes how exact the numeric derivative is, not what it converges to).
pub fn directional<E>(
    analytic: &[f64],
    seed: u64,
    tolerance: Directional,
    mut loss_along: impl FnMut(&[f32], f64) -> Result<f64, E>,
) -> Result<DirectionalCheck, E> {
    let h = tolerance.step(analytic);
    let mut a = Vec::with_capacity(tolerance.directions);
    let mut n = Vec::with_capacity(tolerance.directions);
    for k in 0..tolerance.directions {
        let key = seed
            .wrapping_add(k as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let v = unit_direction(analytic.len(), key);
        a.push(
            analytic
                .iter()
                .zip(&v)
                .map(|(g, &v)| g * f64::from(v))
                .sum::<f64>(),
        );
        let (p2, p1) = (loss_along(&v, 2.0 * h)?, loss_along(&v, h)?);
        let (m1, m2) = (loss_along(&v, -h)?, loss_along(&v, -2.0 * h)?);
        n.push((-p2 + 8.0 * p1 - 8.0 * m1 + m2) / (12.0 * h));
    }
    Ok(judge_directional(a, n, tolerance))
}

/// Judges projected analytic derivatives `a` against numeric ones `n`.
pub fn judge_directional(a: Vec<f64>, n: Vec<f64>, tolerance: Directional) -> DirectionalCheck {
    let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff: Vec<f64> = a.iter().zip(&n).map(|(a, n)| a - n).collect();
    let scale = norm(&a).max(norm(&n));
    let rel_error = if scale.is_nan() || norm(&diff).is_nan() {
        f64::NAN
    } else if scale < tolerance.zero {
        0.0
    } else {
        norm(&diff) / scale
    };
    DirectionalCheck {
        passed: rel_error <= tolerance.rtol,
        analytic: a,
        numeric: n,
        rel_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn f(x: &[f64]) -> f64 {
        x[0] * x[0] * x[1] + (x[1] * x[2]).sin()
    }

    fn grad(x: &[f64]) -> Vec<f64> {
        vec![
            2.0 * x[0] * x[1],
            x[0] * x[0] + x[2] * (x[1] * x[2]).cos(),
            x[1] * (x[1] * x[2]).cos(),
        ]
    }

    fn run(x: &[f64], analytic: &[f64]) -> GradCheck {
        let entries: Vec<(usize, f64)> = analytic.iter().copied().enumerate().collect();
        check(&entries, Tolerance::F64, |i, d| {
            let mut y = x.to_vec();
            y[i] += d;
            Ok::<_, Infallible>(f(&y))
        })
        .unwrap()
    }

    #[test]
    fn right_gradient_passes() {
        let x = [0.3, -1.2, 0.7];
        let r = run(&x, &grad(&x));
        assert!(r.passed, "{r:?}");
        assert_eq!(r.checked, 3);
        assert!(r.max_abs_error < 1e-8);
    }

    #[test]
    fn wrong_gradient_fails_and_names_the_bad_entry() {
        let x = [0.3, -1.2, 0.7];
        let mut g = grad(&x);
        g[1] *= 1.01; // a 1% error in one entry
        let r = run(&x, &g);
        assert!(!r.passed);
        let worst = r.worst.expect("a failing check reports its worst entry");
        assert_eq!(worst.index, 1);
        assert!((worst.analytic - g[1]).abs() < 1e-15);
        assert!(r.max_rel_error > 5e-3);
    }

    #[test]
    fn nan_gradient_fails() {
        let x = [0.3, -1.2, 0.7];
        let mut g = grad(&x);
        g[2] = f64::NAN;
        let r = run(&x, &g);
        assert!(!r.passed);
        assert_eq!(r.worst.map(|w| w.index), Some(2));
    }

    #[test]
    fn directional_check_scores_scale_free() {
        let x = [0.3, -1.2, 0.7];
        let run = |g: &[f64]| {
            directional(g, 7, Directional::F64, |v, t| {
                let y: Vec<f64> = x
                    .iter()
                    .zip(v)
                    .map(|(x, &v)| x + t * f64::from(v))
                    .collect();
                Ok::<_, Infallible>(f(&y) * 1e-9)
            })
            .unwrap()
        };
        let g: Vec<f64> = grad(&x).iter().map(|g| g * 1e-9).collect();
        let right = run(&g);
        assert!(right.passed && right.rel_error < 1e-6, "{right:?}");
        let doubled: Vec<f64> = g.iter().map(|g| 2.0 * g).collect();
        assert!((run(&doubled).rel_error - 0.5).abs() < 1e-6);
        let zero = run(&[0.0; 3]);
        assert!(
            !zero.passed && (zero.rel_error - 1.0).abs() < 1e-6,
            "{zero:?}"
        );
        let mut nan = g.clone();
        nan[0] = f64::NAN;
        assert!(!run(&nan).passed);
    }

    #[test]
    fn unit_directions_are_unit_and_seeded() {
        let v = unit_direction(1000, 1);
        let n: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((n - 1.0).abs() < 1e-6);
        assert_eq!(v, unit_direction(1000, 1));
        assert_ne!(v, unit_direction(1000, 2));
    }
}
