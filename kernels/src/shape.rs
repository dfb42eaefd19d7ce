//! The shape checks of every op, written once for every backend.
//!
//! Each backend calls the check of an op with its buffers' lengths before it touches
//! them: the CPU backend then slices without panicking, and the CUDA launchers'
//! `// SAFETY:` comments rely on these functions (a kernel reads and writes exactly the
//! elements the shape names, which a passed check guarantees are there).
//!
//! A check fails with [`Error::Shape`] naming the op and the first buffer that is too
//! small, in the order the arguments are listed; other bad shapes (channels that do not
//! divide the features) are an [`Error::Device`] naming the op.

use crate::error::check_len;
use crate::{Error, Result};

/// `rows × cols`, refusing a product that overflows.
fn product(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| Error::Device(format!("{op}: {rows} × {cols} elements overflow")))
}

/// Every `(name, len)` holds at least `needed` elements.
fn all(op: &'static str, buffers: &[(&'static str, usize)], needed: usize) -> Result<()> {
    for &(name, len) in buffers {
        check_len(op, name, len, needed)?;
    }
    Ok(())
}

/// `write` and `write_idx` (`op`): `dst` holds the `len` elements written.
pub fn write(op: &'static str, dst: usize, len: usize) -> Result<()> {
    check_len(op, "dst", dst, len)
}

/// `copy`: `src` and `dst` hold `len` elements.
pub fn copy(src: usize, dst: usize, len: usize) -> Result<()> {
    all("copy", &[("src", src), ("dst", dst)], len)
}

/// `fill`: `buf` holds `len` elements.
pub fn fill(buf: usize, len: usize) -> Result<()> {
    check_len("fill", "buf", buf, len)
}

/// `gather_batch`: `channels` divides `features`; `order` holds `start + rows`
/// indices, `scale` and `shift` `channels` floats, `x` `rows × features`, `y` `rows`
/// labels and `images` `samples × features` bytes (`samples` = the labels' length).
#[allow(clippy::too_many_arguments)]
pub fn gather_batch(
    images: usize,
    samples: usize,
    order: usize,
    start: usize,
    rows: usize,
    features: usize,
    scale: usize,
    shift: usize,
    channels: usize,
    x: usize,
    y: usize,
) -> Result<()> {
    let op = "gather_batch";
    if channels == 0 || !features.is_multiple_of(channels) {
        return Err(Error::Device(format!(
            "{op}: {features} features do not split into {channels} channels"
        )));
    }
    let end = start
        .checked_add(rows)
        .ok_or_else(|| Error::Device(format!("{op}: start + rows overflows")))?;
    check_len(op, "order", order, end)?;
    check_len(op, "scale", scale, channels)?;
    check_len(op, "shift", shift, channels)?;
    check_len(op, "x", x, product(op, rows, features)?)?;
    check_len(op, "y", y, rows)?;
    check_len(op, "images", images, product(op, samples, features)?)
}

/// `matmul`: `a` holds `m × k`, `b` `k × n`, `c` `m × n`.
pub fn matmul(a: usize, b: usize, c: usize, m: usize, n: usize, k: usize) -> Result<()> {
    let op = "matmul";
    check_len(op, "a", a, product(op, m, k)?)?;
    check_len(op, "b", b, product(op, k, n)?)?;
    check_len(op, "c", c, product(op, m, n)?)
}

/// `bias_act`: `x` holds `rows × cols`, the bias (when there is one) `cols`.
pub fn bias_act(x: usize, bias: Option<usize>, rows: usize, cols: usize) -> Result<()> {
    let op = "bias_act";
    check_len(op, "x", x, product(op, rows, cols)?)?;
    match bias {
        Some(b) => check_len(op, "bias", b, cols),
        None => Ok(()),
    }
}

/// `act_backward`: `y` and `grad` hold `len`.
pub fn act_backward(y: usize, grad: usize, len: usize) -> Result<()> {
    all("act_backward", &[("y", y), ("grad", grad)], len)
}

/// `sum_rows`: `x` holds `rows × cols`, `out` `cols`.
pub fn sum_rows(x: usize, rows: usize, cols: usize, out: usize) -> Result<()> {
    let op = "sum_rows";
    check_len(op, "x", x, product(op, rows, cols)?)?;
    check_len(op, "out", out, cols)
}

/// The lengths of a [`crate::BatchNormBuffers`].
#[derive(Debug, Clone, Copy)]
pub struct BatchNormLens {
    /// γ.
    pub gamma: usize,
    /// β.
    pub beta: usize,
    /// Running mean.
    pub running_mean: usize,
    /// Running variance.
    pub running_var: usize,
    /// x̂.
    pub xhat: usize,
    /// 1/√(var + eps).
    pub invstd: usize,
}

/// `batchnorm_forward`: `x`, `y` and x̂ hold `rows × cols`, the five per-feature buffers
/// `cols`.
pub fn batchnorm_forward(
    x: usize,
    y: usize,
    bn: BatchNormLens,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "batchnorm_forward";
    let n = product(op, rows, cols)?;
    all(op, &[("x", x), ("y", y), ("xhat", bn.xhat)], n)?;
    all(
        op,
        &[
            ("gamma", bn.gamma),
            ("beta", bn.beta),
            ("running_mean", bn.running_mean),
            ("running_var", bn.running_var),
            ("invstd", bn.invstd),
        ],
        cols,
    )
}

/// `batchnorm_backward`: `dy`, x̂ and `dx` hold `rows × cols`; γ, invstd, dγ and dβ
/// `cols`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    dy: usize,
    xhat: usize,
    gamma: usize,
    invstd: usize,
    dx: usize,
    dgamma: usize,
    dbeta: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "batchnorm_backward";
    let n = product(op, rows, cols)?;
    all(op, &[("dy", dy), ("xhat", xhat), ("dx", dx)], n)?;
    all(
        op,
        &[
            ("gamma", gamma),
            ("invstd", invstd),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
        ],
        cols,
    )
}

/// `dropout_mask`: `mask` holds `len`.
pub fn dropout_mask(mask: usize, len: usize) -> Result<()> {
    check_len("dropout_mask", "mask", mask, len)
}

/// `mul`: `x`, `m` and `out` hold `len`.
pub fn mul(x: usize, m: usize, out: usize, len: usize) -> Result<()> {
    all("mul", &[("x", x), ("m", m), ("out", out)], len)
}

/// `mul_assign`: `x` and `m` hold `len`.
pub fn mul_assign(x: usize, m: usize, len: usize) -> Result<()> {
    all("mul_assign", &[("x", x), ("m", m)], len)
}

/// `softmax_xent`: `logits` (and `dlogits`, when asked for) hold `rows × cols`, `labels`
/// `rows`, `acc` 2.
pub fn softmax_xent(
    logits: usize,
    labels: usize,
    rows: usize,
    cols: usize,
    dlogits: Option<usize>,
    acc: usize,
) -> Result<()> {
    let op = "softmax_xent";
    let n = product(op, rows, cols)?;
    check_len(op, "logits", logits, n)?;
    check_len(op, "labels", labels, rows)?;
    check_len(op, "acc", acc, 2)?;
    match dlogits {
        Some(d) => check_len(op, "dlogits", d, n),
        None => Ok(()),
    }
}

/// `penalty_grad`: `w` and `g` hold `len`.
pub fn penalty_grad(w: usize, g: usize, len: usize) -> Result<()> {
    all("penalty_grad", &[("w", w), ("g", g)], len)
}

/// `sgd_step`: `w`, `g` and the velocity hold `len`.
pub fn sgd_step(w: usize, g: usize, velocity: usize, len: usize) -> Result<()> {
    all(
        "sgd_step",
        &[("w", w), ("g", g), ("velocity", velocity)],
        len,
    )
}

/// `adam_step`: `w`, `g`, `m` and `v` hold `len`.
pub fn adam_step(w: usize, g: usize, m: usize, v: usize, len: usize) -> Result<()> {
    all("adam_step", &[("w", w), ("g", g), ("m", m), ("v", v)], len)
}

/// `grad_stats`: `g` holds `len`, `acc` 2.
pub fn grad_stats(g: usize, len: usize, acc: usize) -> Result<()> {
    check_len("grad_stats", "g", g, len)?;
    check_len("grad_stats", "acc", acc, 2)
}

/// `moments`: `x` holds `len`.
pub fn moments(x: usize, len: usize) -> Result<()> {
    check_len("moments", "x", x, len)
}

/// `sq_dist`: `a` and `b` hold `len`.
pub fn sq_dist(a: usize, b: usize, len: usize) -> Result<()> {
    all("sq_dist", &[("a", a), ("b", b)], len)
}

/// `dead_columns`: `x` holds `rows × cols`.
pub fn dead_columns(x: usize, rows: usize, cols: usize) -> Result<()> {
    let op = "dead_columns";
    check_len(op, "x", x, product(op, rows, cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_short_buffer_is_named() {
        let e = matmul(6, 5, 6, 2, 3, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "matmul: buffer `b` holds 5 elements, the shape needs 9"
        );
        assert!(matmul(6, 9, 6, 2, 3, 3).is_ok());
        let e = gather_batch(100, 10, 4, 0, 4, 10, 3, 3, 3, 40, 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gather_batch: 10 features do not split into 3 channels"
        );
        let e = softmax_xent(20, 2, 2, 10, Some(19), 2).unwrap_err();
        assert!(
            e.to_string().starts_with("softmax_xent: buffer `dlogits`"),
            "{e}"
        );
    }

    #[test]
    fn an_overflowing_shape_is_refused_not_wrapped() {
        assert!(matmul(0, 0, 0, usize::MAX, 2, 2).is_err());
        assert!(dead_columns(0, usize::MAX, 3).is_err());
        assert!(gather_batch(0, 0, 0, usize::MAX, 1, 1, 1, 1, 1, 0, 0).is_err());
    }
}
