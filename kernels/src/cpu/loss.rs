//! Softmax cross-entropy, fused forward and backward.

use crate::{Error, Float, Result};

/// See [`crate::Backend::softmax_xent`].
pub fn softmax_xent<T: Float>(
    logits: &[T],
    labels: &[u32],
    rows: usize,
    cols: usize,
    mut dlogits: Option<&mut [T]>,
    acc: &mut [T],
) -> Result<()> {
    let inv_rows = T::from_f64(1.0 / rows as f64);
    let mut loss_sum = 0.0f64;
    let mut correct = 0usize;
    for (r, row) in logits[..rows * cols].chunks_exact(cols).enumerate() {
        let label = labels[r];
        if label as usize >= cols {
            return Err(Error::Label {
                label,
                row: r,
                classes: cols,
            });
        }
        let (mut best, mut best_at) = (row[0], 0);
        for (c, &v) in row.iter().enumerate().skip(1) {
            if v > best {
                best = v;
                best_at = c;
            }
        }
        // NaN logits make `best` meaningless; the NaN still reaches the loss below.
        let mut sum = T::ZERO;
        for &v in row {
            sum += (v - best).exp();
        }
        let log_sum = sum.ln();
        loss_sum += (log_sum - (row[label as usize] - best)).to_f64();
        if best_at == label as usize {
            correct += 1;
        }
        if let Some(d) = dlogits.as_deref_mut() {
            let inv_sum = T::ONE / sum;
            for (c, (dv, &v)) in d[r * cols..(r + 1) * cols].iter_mut().zip(row).enumerate() {
                let p = (v - best).exp() * inv_sum;
                let target = if c == label as usize { T::ONE } else { T::ZERO };
                *dv = (p - target) * inv_rows;
            }
        }
    }
    acc[0] += T::from_f64(loss_sum);
    acc[1] += T::from_f64(correct as f64);
    Ok(())
}
