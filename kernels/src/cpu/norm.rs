//! Batch normalisation over the rows of a `rows × cols` matrix (PyTorch `BatchNorm1d`).

use crate::{BatchNormMode, Float};

/// The buffers of [`crate::BatchNormBuffers`] as slices.
pub struct BnSlices<'a, T> {
    /// γ.
    pub gamma: &'a [T],
    /// β.
    pub beta: &'a [T],
    /// Running mean.
    pub running_mean: &'a mut [T],
    /// Running (unbiased) variance.
    pub running_var: &'a mut [T],
    /// Saved x̂.
    pub xhat: &'a mut [T],
    /// Saved 1/√(var + eps).
    pub invstd: &'a mut [T],
}

/// See [`crate::Backend::batchnorm_forward`].
pub fn forward<T: Float>(
    x: &[T],
    y: &mut [T],
    bn: BnSlices<'_, T>,
    rows: usize,
    cols: usize,
    eps: f64,
    mode: BatchNormMode,
) {
    let x = &x[..rows * cols];
    let y = &mut y[..rows * cols];
    if mode == BatchNormMode::Eval {
        for c in 0..cols {
            let inv = T::ONE / (bn.running_var[c] + T::from_f64(eps)).sqrt();
            let (g, b, mu) = (bn.gamma[c], bn.beta[c], bn.running_mean[c]);
            for r in 0..rows {
                y[r * cols + c] = (x[r * cols + c] - mu) * inv * g + b;
            }
        }
        return;
    }
    // Two passes per feature in f64 for the statistics, then one to normalise.
    let mut mean = vec![0.0f64; cols];
    let mut var = vec![0.0f64; cols];
    for row in x.chunks_exact(cols) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v.to_f64();
        }
    }
    for m in mean.iter_mut() {
        *m /= rows as f64;
    }
    for row in x.chunks_exact(cols) {
        for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    for c in 0..cols {
        let biased = var[c] / rows as f64;
        bn.invstd[c] = T::from_f64(1.0 / (biased + eps).sqrt());
        if let BatchNormMode::Train { momentum } = mode {
            let unbiased = if rows > 1 {
                var[c] / (rows - 1) as f64
            } else {
                biased
            };
            bn.running_mean[c] =
                T::from_f64((1.0 - momentum) * bn.running_mean[c].to_f64() + momentum * mean[c]);
            bn.running_var[c] =
                T::from_f64((1.0 - momentum) * bn.running_var[c].to_f64() + momentum * unbiased);
        }
    }
    let mean_t: Vec<T> = mean.iter().map(|&m| T::from_f64(m)).collect();
    for ((xr, yr), hr) in x
        .chunks_exact(cols)
        .zip(y.chunks_exact_mut(cols))
        .zip(bn.xhat.chunks_exact_mut(cols))
    {
        for c in 0..cols {
            let h = (xr[c] - mean_t[c]) * bn.invstd[c];
            hr[c] = h;
            yr[c] = h * bn.gamma[c] + bn.beta[c];
        }
    }
}

/// See [`crate::Backend::batchnorm_backward`]:
/// `dx = γ·invstd/N · (N·dy − Σdy − x̂·Σ(dy·x̂))`.
pub fn backward<T: Float>(
    dy: &[T],
    xhat: &[T],
    gamma: &[T],
    invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    rows: usize,
    cols: usize,
) {
    let mut sum_dy = vec![0.0f64; cols];
    let mut sum_dy_xhat = vec![0.0f64; cols];
    for (dr, hr) in dy[..rows * cols]
        .chunks_exact(cols)
        .zip(xhat.chunks_exact(cols))
    {
        for c in 0..cols {
            sum_dy[c] += dr[c].to_f64();
            sum_dy_xhat[c] += (dr[c] * hr[c]).to_f64();
        }
    }
    let n = rows as f64;
    let mut k = Vec::with_capacity(cols);
    let mut mean_dy = Vec::with_capacity(cols);
    let mut mean_dy_xhat = Vec::with_capacity(cols);
    for c in 0..cols {
        dbeta[c] = T::from_f64(sum_dy[c]);
        dgamma[c] = T::from_f64(sum_dy_xhat[c]);
        k.push(gamma[c] * invstd[c]);
        mean_dy.push(T::from_f64(sum_dy[c] / n));
        mean_dy_xhat.push(T::from_f64(sum_dy_xhat[c] / n));
    }
    for ((dr, hr), xr) in dy[..rows * cols]
        .chunks_exact(cols)
        .zip(xhat.chunks_exact(cols))
        .zip(dx.chunks_exact_mut(cols))
    {
        for c in 0..cols {
            xr[c] = k[c] * (dr[c] - mean_dy[c] - hr[c] * mean_dy_xhat[c]);
        }
    }
}
