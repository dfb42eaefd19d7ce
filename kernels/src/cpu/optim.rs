//! Optimiser updates, as PyTorch's `SGD` and `Adam`.

use crate::Float;

/// See [`crate::Backend::sgd_step`].
pub fn sgd<T: Float>(w: &mut [T], g: &[T], v: &mut [T], lr: f64, momentum: f64, wd: f64) {
    let (lr, mu, wd) = (T::from_f64(lr), T::from_f64(momentum), T::from_f64(wd));
    for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
        let g = g + wd * *w;
        *v = mu * *v + g;
        *w -= lr * *v;
    }
}

/// See [`crate::Backend::adam_step`].
pub fn adam<T: Float>(
    w: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: f64,
    (beta1, beta2): (f64, f64),
    eps: f64,
    wd: f64,
    step: u32,
) {
    let bc1 = 1.0 - beta1.powi(step as i32);
    let bc2 = 1.0 - beta2.powi(step as i32);
    let step_size = T::from_f64(lr / bc1);
    let inv_sqrt_bc2 = T::from_f64(1.0 / bc2.sqrt());
    let (b1, b2, eps, wd) = (
        T::from_f64(beta1),
        T::from_f64(beta2),
        T::from_f64(eps),
        T::from_f64(wd),
    );
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g + wd * *w;
        *m = b1 * *m + (T::ONE - b1) * g;
        *v = b2 * *v + (T::ONE - b2) * g * g;
        let denom = v.sqrt() * inv_sqrt_bc2 + eps;
        *w -= step_size * *m / denom;
    }
}
