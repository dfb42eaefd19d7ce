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

// Packed ops (`crate::packed`): each trial's blocks are checked as the single op's
// buffers, and every packed buffer must hold the last trial's block.

/// `groups` blocks of `per` elements, `stride` apart, in a buffer of `len`: the last
/// block is there, and blocks do not overlap (`shared`: a read-only input may give every
/// trial the same block, stride 0).
fn blocks(
    op: &'static str,
    name: &'static str,
    len: usize,
    stride: usize,
    per: usize,
    groups: usize,
    shared: bool,
) -> Result<()> {
    if groups == 0 || per == 0 {
        return Ok(());
    }
    if stride < per && !(shared && stride == 0) {
        return Err(Error::Device(format!(
            "{op}: the blocks of `{name}` ({per} elements, {stride} apart) overlap"
        )));
    }
    let needed = (groups - 1)
        .checked_mul(stride)
        .and_then(|s| s.checked_add(per))
        .ok_or_else(|| Error::Device(format!("{op}: `{name}` of {groups} blocks overflows")))?;
    check_len(op, name, len, needed)
}

/// One value of `name` per trial.
fn per_trial(op: &'static str, name: &'static str, len: usize, groups: usize) -> Result<()> {
    if len != groups {
        return Err(Error::Device(format!(
            "{op}: {len} values of `{name}` for {groups} trials"
        )));
    }
    Ok(())
}

/// Every `(name, len)` packed buffer holds `groups` blocks of `per`, `stride` apart.
fn all_blocks(
    op: &'static str,
    buffers: &[(&'static str, usize)],
    stride: usize,
    per: usize,
    groups: usize,
) -> Result<()> {
    for &(name, len) in buffers {
        blocks(op, name, len, stride, per, groups, false)?;
    }
    Ok(())
}

/// `gather_batch_packed`: the single op's checks per trial (`order_stride` may be 0).
#[allow(clippy::too_many_arguments)]
pub fn gather_batch_packed(
    images: usize,
    samples: usize,
    orders: usize,
    order_stride: usize,
    start: usize,
    rows: usize,
    features: usize,
    scale: usize,
    shift: usize,
    channels: usize,
    x: (usize, usize),
    y: (usize, usize),
    groups: usize,
) -> Result<()> {
    let op = "gather_batch_packed";
    let per_x = product(op, rows, features)?;
    gather_batch(
        images,
        samples,
        usize::MAX,
        start,
        rows,
        features,
        scale,
        shift,
        channels,
        per_x,
        rows,
    )?;
    let end = start + rows;
    blocks(op, "orders", orders, order_stride, end, groups, true)?;
    blocks(op, "x", x.0, x.1, per_x, groups, false)?;
    blocks(op, "y", y.0, y.1, rows, groups, false)
}

/// `matmul_batched`: `(len, stride)` of `a`, `b`, `c`; `a` and `b` may be shared.
pub fn matmul_batched(
    a: (usize, usize),
    b: (usize, usize),
    c: (usize, usize),
    m: usize,
    n: usize,
    k: usize,
    groups: usize,
) -> Result<()> {
    let op = "matmul_batched";
    blocks(op, "a", a.0, a.1, product(op, m, k)?, groups, true)?;
    blocks(op, "b", b.0, b.1, product(op, k, n)?, groups, true)?;
    blocks(op, "c", c.0, c.1, product(op, m, n)?, groups, false)
}

/// `bias_act_packed`: `x` blocks of `rows × cols`, bias blocks of `cols`, one activation
/// and one switch per trial.
pub fn bias_act_packed(
    x: usize,
    stride: usize,
    bias: Option<usize>,
    acts: usize,
    on: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let op = "bias_act_packed";
    per_trial(op, "acts", acts, on)?;
    blocks(op, "x", x, stride, product(op, rows, cols)?, on, false)?;
    match bias {
        Some(b) => blocks(op, "bias", b, cols, cols, on, false),
        None => Ok(()),
    }
}

/// `act_backward_packed`: `y` and `grad` blocks of `len`.
pub fn act_backward_packed(
    y: usize,
    grad: usize,
    stride: usize,
    acts: usize,
    on: usize,
    len: usize,
) -> Result<()> {
    let op = "act_backward_packed";
    per_trial(op, "acts", acts, on)?;
    all_blocks(op, &[("y", y), ("grad", grad)], stride, len, on)
}

/// `sum_rows_packed`: `x` blocks of `rows × cols`, `out` blocks of `cols`.
pub fn sum_rows_packed(
    x: usize,
    stride: usize,
    rows: usize,
    cols: usize,
    out: usize,
    groups: usize,
) -> Result<()> {
    let op = "sum_rows_packed";
    blocks(op, "x", x, stride, product(op, rows, cols)?, groups, false)?;
    blocks(op, "out", out, cols, cols, groups, false)
}

/// `batchnorm_forward_packed`: `x`, `y`, x̂ blocks of `rows × cols`; the per-feature
/// buffers blocks of `cols`.
pub fn batchnorm_forward_packed(
    x: usize,
    y: usize,
    stride: usize,
    bn: BatchNormLens,
    rows: usize,
    cols: usize,
    on: usize,
) -> Result<()> {
    let op = "batchnorm_forward_packed";
    let n = product(op, rows, cols)?;
    all_blocks(op, &[("x", x), ("y", y), ("xhat", bn.xhat)], stride, n, on)?;
    all_blocks(
        op,
        &[
            ("gamma", bn.gamma),
            ("beta", bn.beta),
            ("running_mean", bn.running_mean),
            ("running_var", bn.running_var),
            ("invstd", bn.invstd),
        ],
        cols,
        cols,
        on,
    )
}

/// `batchnorm_backward_packed`: `dy`, x̂, `dx` blocks of `rows × cols`; γ, invstd, dγ,
/// dβ blocks of `cols`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward_packed(
    dy: usize,
    xhat: usize,
    dx: usize,
    stride: usize,
    gamma: usize,
    invstd: usize,
    dgamma: usize,
    dbeta: usize,
    rows: usize,
    cols: usize,
    on: usize,
) -> Result<()> {
    let op = "batchnorm_backward_packed";
    let n = product(op, rows, cols)?;
    all_blocks(op, &[("dy", dy), ("xhat", xhat), ("dx", dx)], stride, n, on)?;
    all_blocks(
        op,
        &[
            ("gamma", gamma),
            ("invstd", invstd),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
        ],
        cols,
        cols,
        on,
    )
}

/// `dropout_mask_packed`: `mask` blocks of `len`, one probability and key per trial.
pub fn dropout_mask_packed(
    mask: usize,
    stride: usize,
    len: usize,
    p: usize,
    keys: usize,
    on: usize,
) -> Result<()> {
    let op = "dropout_mask_packed";
    per_trial(op, "p", p, on)?;
    per_trial(op, "keys", keys, on)?;
    blocks(op, "mask", mask, stride, len, on, false)
}

/// `mul_packed`, `mul_assign_packed`, `copy_packed` (`op`): every buffer in blocks of
/// `len`.
pub fn elementwise_packed(
    op: &'static str,
    buffers: &[(&'static str, usize)],
    stride: usize,
    len: usize,
    on: usize,
) -> Result<()> {
    all_blocks(op, buffers, stride, len, on)
}

/// `softmax_xent_packed`: `logits` (and `dlogits`) blocks of `rows × cols`, `labels`
/// blocks of `rows` (may be shared), `acc` blocks of 2.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_packed(
    logits: usize,
    logits_stride: usize,
    labels: usize,
    labels_stride: usize,
    rows: usize,
    cols: usize,
    dlogits: Option<usize>,
    acc: usize,
    groups: usize,
) -> Result<()> {
    let op = "softmax_xent_packed";
    let n = product(op, rows, cols)?;
    blocks(op, "logits", logits, logits_stride, n, groups, false)?;
    blocks(op, "labels", labels, labels_stride, rows, groups, true)?;
    blocks(op, "acc", acc, 2, 2, groups, false)?;
    match dlogits {
        Some(d) => blocks(op, "dlogits", d, logits_stride, n, groups, false),
        None => Ok(()),
    }
}

/// `penalty_grad_packed`: `w` and `g` blocks of `len`, `l1` and `l2` per trial.
pub fn penalty_grad_packed(
    w: usize,
    g: usize,
    stride: usize,
    len: usize,
    l1: usize,
    l2: usize,
    on: usize,
) -> Result<()> {
    let op = "penalty_grad_packed";
    per_trial(op, "l1", l1, on)?;
    per_trial(op, "l2", l2, on)?;
    all_blocks(op, &[("w", w), ("g", g)], stride, len, on)
}

/// `sgd_step_packed` and `adam_step_packed` (`op`): every buffer in blocks of `len`, the
/// hyper-parameters (and Adam's steps) per trial.
pub fn optimizer_packed(
    op: &'static str,
    buffers: &[(&'static str, usize)],
    stride: usize,
    len: usize,
    hyper: usize,
    steps: Option<usize>,
    on: usize,
) -> Result<()> {
    per_trial(op, "hyper", hyper, on)?;
    if let Some(steps) = steps {
        per_trial(op, "steps", steps, on)?;
    }
    all_blocks(op, buffers, stride, len, on)
}

/// `grad_stats_packed`: `g` blocks of `len`, `acc` blocks of 2.
pub fn grad_stats_packed(
    g: usize,
    stride: usize,
    len: usize,
    acc: usize,
    groups: usize,
) -> Result<()> {
    let op = "grad_stats_packed";
    blocks(op, "g", g, stride, len, groups, false)?;
    blocks(op, "acc", acc, 2, 2, groups, false)
}

/// `moments_packed`, `sq_dist_packed`, `dead_columns_packed` (`op`): read-only blocks
/// of `per` (`rows × cols` for dead columns).
pub fn reduce_packed(
    op: &'static str,
    buffers: &[(&'static str, usize)],
    stride: usize,
    per: usize,
    groups: usize,
) -> Result<()> {
    all_blocks(op, buffers, stride, per, groups)
}

/// `rows × cols` for a packed op's block, refusing an overflow.
pub fn block(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
    product(op, rows, cols)
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

    #[test]
    fn packed_blocks_must_hold_the_last_trial_and_not_overlap() {
        // 3 trials of 2×2 blocks, 5 apart: the last block ends at 14.
        assert!(matmul_batched((14, 5), (4, 0), (14, 5), 2, 2, 2, 3).is_ok());
        let e = matmul_batched((13, 5), (4, 0), (14, 5), 2, 2, 2, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "matmul_batched: buffer `a` holds 13 elements, the shape needs 14"
        );
        // A written buffer may not be shared.
        let e = matmul_batched((14, 5), (4, 0), (4, 0), 2, 2, 2, 3).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        let e = bias_act_packed(8, 4, None, 1, 2, 2, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bias_act_packed: 1 values of `acts` for 2 trials"
        );
    }
}
