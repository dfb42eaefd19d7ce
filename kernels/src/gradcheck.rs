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
}
