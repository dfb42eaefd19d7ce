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

/// See [`crate::Backend::grad_stats`].
pub fn grad_stats<T: Float>(g: &[T], acc: &mut [T]) {
    let [_, s2, _, m] = moments(g);
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
