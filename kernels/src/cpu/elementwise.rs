//! Elementwise ops: batch gathering, bias + activation, dropout, penalties.

use crate::{Activation, Float, dropout_keep};

/// See [`crate::Backend::gather_batch`].
pub fn gather_batch<T: Float>(
    images: &[u8],
    labels: &[u8],
    order: &[u32],
    features: usize,
    scale: &[T],
    shift: &[T],
    x: &mut [T],
    y: &mut [u32],
) {
    let plane = features / scale.len();
    for (r, &i) in order.iter().enumerate() {
        let i = i as usize;
        let src = &images[i * features..(i + 1) * features];
        let dst = &mut x[r * features..(r + 1) * features];
        for (c, (&a, &b)) in scale.iter().zip(shift).enumerate() {
            let range = c * plane..(c + 1) * plane;
            for (d, &s) in dst[range.clone()].iter_mut().zip(&src[range]) {
                *d = T::from_f64(s as f64) * a + b;
            }
        }
        y[r] = labels[i] as u32;
    }
}

/// See [`crate::Backend::bias_act`].
pub fn bias_act<T: Float>(x: &mut [T], bias: Option<&[T]>, act: Activation, cols: usize) {
    match bias {
        Some(bias) => {
            for row in x.chunks_exact_mut(cols) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = act.forward(*v + b);
                }
            }
        }
        None if act == Activation::Identity => {}
        None => {
            for v in x.iter_mut() {
                *v = act.forward(*v);
            }
        }
    }
}

/// See [`crate::Backend::act_backward`].
pub fn act_backward<T: Float>(y: &[T], grad: &mut [T], act: Activation) {
    if act == Activation::Identity {
        return;
    }
    for (g, &y) in grad.iter_mut().zip(y) {
        *g *= act.derivative_from_output(y);
    }
}

/// See [`crate::Backend::dropout_mask`].
pub fn dropout_mask<T: Float>(mask: &mut [T], p: f32, key: u64) {
    let scale = T::from_f64(1.0 / (1.0 - p as f64));
    for (i, m) in mask.iter_mut().enumerate() {
        *m = if dropout_keep(key, i as u64, p) {
            scale
        } else {
            T::ZERO
        };
    }
}

/// See [`crate::Backend::penalty_grad`].
pub fn penalty_grad<T: Float>(w: &[T], g: &mut [T], l1: f64, l2: f64) {
    let l1 = T::from_f64(l1);
    let two_l2 = T::from_f64(2.0 * l2);
    for (g, &w) in g.iter_mut().zip(w) {
        let sign = if w > T::ZERO {
            T::ONE
        } else if w < T::ZERO {
            -T::ONE
        } else {
            T::ZERO
        };
        *g += l1 * sign + two_l2 * w;
    }
}
