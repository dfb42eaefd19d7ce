//! Reductions: bias gradients and the diagnostics' statistics.

use crate::Float;

/// See [`crate::Backend::sum_rows`].
pub fn sum_rows<T: Float>(x: &[T], rows: usize, cols: usize, out: &mut [T]) {
    out[..cols].fill(T::ZERO);
    for row in x[..rows * cols].chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// See [`crate::Backend::moments`].
pub fn moments<T: Float>(x: &[T]) -> [f64; 4] {
    let (mut s, mut s2, mut sa, mut m) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &v in x {
        let v = v.to_f64();
        s += v;
        s2 += v * v;
        sa += v.abs();
        m = m.max(v.abs());
    }
    [s, s2, sa, m]
}

/// Lanes of the partial sums in [`sum_sq_max_abs`]: wide enough for the compiler to
/// keep them in vector registers.
const LANES: usize = 16;
/// Elements summed in `T` before the partial sums are added into an f64 total.
const BLOCK: usize = 4096;

/// `(Σx², max|x|)`, vectorised: per-lane partial sums in `T` over blocks of
/// [`BLOCK`] elements, blocks added in f64. NaN propagates into the sum.
pub fn sum_sq_max_abs<T: Float>(x: &[T]) -> (f64, f64) {
    let mut total = 0.0f64;
    let mut max = [T::ZERO; LANES];
    for block in x.chunks(BLOCK) {
        let mut sq = [T::ZERO; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for l in 0..LANES {
                let v = chunk[l];
                sq[l] += v * v;
                let a = v.abs();
                max[l] = if a > max[l] { a } else { max[l] };
            }
        }
        for (l, &v) in chunks.remainder().iter().enumerate() {
            sq[l] += v * v;
            max[l] = max[l].max(v.abs());
        }
        total += sq.iter().map(|v| v.to_f64()).sum::<f64>();
    }
    let max = max.iter().fold(0.0f64, |m, v| m.max(v.to_f64()));
    (total, max)
}

/// See [`crate::Backend::grad_stats`].
pub fn grad_stats<T: Float>(g: &[T], acc: &mut [T]) {
    let (s2, m) = sum_sq_max_abs(g);
    acc[0] += T::from_f64(s2.sqrt());
    acc[1] = acc[1].max(T::from_f64(m));
}

/// See [`crate::Backend::sq_dist`].
pub fn sq_dist<T: Float>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.to_f64() - y.to_f64();
            d * d
        })
        .sum()
}

/// See [`crate::Backend::dead_columns`].
pub fn dead_columns<T: Float>(x: &[T], rows: usize, cols: usize) -> usize {
    let mut alive = vec![false; cols];
    for row in x[..rows * cols].chunks_exact(cols) {
        for (a, &v) in alive.iter_mut().zip(row) {
            *a |= v > T::ZERO;
        }
    }
    alive.iter().filter(|&&a| !a).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_sum_of_squares_and_max_match_the_plain_loop() {
        for n in [0, 1, 15, 16, 17, 4095, 4096, 4097, 10_000] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let (s2, m) = sum_sq_max_abs(&x);
            let [_, want_s2, _, want_m] = moments(&x);
            assert!(
                (s2 - want_s2).abs() <= 1e-5 * want_s2.max(1.0),
                "n={n}: {s2} vs {want_s2}"
            );
            assert_eq!(m, want_m, "n={n}");
        }
        let (s2, _) = sum_sq_max_abs(&[1.0f32, f32::NAN, 2.0]);
        assert!(s2.is_nan());
    }
}
