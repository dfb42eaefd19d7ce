//! Gradient checks of every differentiable op of the CPU backend, in f64.
//!
//! Each op `y = op(inputs)` is reduced to a scalar `L = Σ r ⊙ y` with a fixed random
//! projection `r`; the analytic gradient comes from the op's own backward called with
//! upstream gradient `r`, and [`gradcheck::check`] compares EVERY entry of it with
//! central differences under PyTorch `gradcheck`'s float64 tolerances (`Tolerance::F64`:
//! atol 1e-5, rtol 1e-3, eps 1e-6). Where the op has no gradient (optimiser steps,
//! running batch-norm statistics, the dropout mask itself), its values are compared with
//! a direct computation of the PyTorch formula instead.

use gradsweep_kernels::gradcheck::{self, Tolerance};
use gradsweep_kernels::{
    Activation, Backend, BatchNormBuffers, BatchNormMode, CpuBackend, Error, Result, Transpose,
    dropout_keep,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Batch-norm epsilon, as PyTorch's `BatchNorm1d`.
const BN_EPS: f64 = 1e-5;

/// The backend under test: f64, one thread.
fn backend() -> CpuBackend<f64> {
    CpuBackend::new(1)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values uniform in `[lo, hi)`.
fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `len` values with magnitude uniform in `[lo, hi)` and a random sign.
fn away_from_zero(rng: &mut ChaCha8Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len)
        .map(|_| {
            let v = rng.random_range(lo..hi);
            if rng.random::<bool>() { v } else { -v }
        })
        .collect()
}

/// `Σ r ⊙ y`.
fn project(r: &[f64], y: &[f64]) -> f64 {
    assert_eq!(r.len(), y.len());
    r.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// `v` with entry `i` moved by `delta`.
fn moved(v: &[f64], i: usize, delta: f64) -> Vec<f64> {
    let mut v = v.to_vec();
    v[i] += delta;
    v
}

fn flip(t: Transpose) -> Transpose {
    match t {
        Transpose::No => Transpose::Yes,
        Transpose::Yes => Transpose::No,
    }
}

/// Checks every entry of `analytic` against central differences of `loss_at`, and fails
/// with the worst entry when any is out of tolerance.
fn assert_gradient(what: &str, analytic: &[f64], loss_at: impl FnMut(usize, f64) -> Result<f64>) {
    // A vanishing gradient would pass against a constant loss; make sure there is
    // something to compare.
    assert!(
        analytic.iter().any(|g| g.abs() > 1e-3),
        "{what}: analytic gradient is (nearly) zero everywhere: {analytic:?}"
    );
    let entries: Vec<(usize, f64)> = analytic.iter().copied().enumerate().collect();
    let result = gradcheck::check(&entries, Tolerance::F64, loss_at)
        .unwrap_or_else(|e| panic!("{what}: evaluating the loss failed: {e}"));
    assert_eq!(result.checked, analytic.len(), "{what}: entries checked");
    assert!(
        result.passed,
        "{what}: gradient check failed; worst entry {:?} (max abs error {:e}, max rel error {:e})",
        result.worst, result.max_abs_error, result.max_rel_error
    );
}

/// Asserts `|got − want| ≤ tol·max(1, |want|)` elementwise.
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w} (diff {:e})",
            (g - w).abs()
        );
    }
}

/// `op(a)·op(b)` by the definition, for comparison.
fn naive_matmul(
    a: &[f64],
    ta: Transpose,
    b: &[f64],
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let at = |i: usize, p: usize| match ta {
        Transpose::No => a[i * k + p],
        Transpose::Yes => a[p * m + i],
    };
    let bt = |p: usize, j: usize| match tb {
        Transpose::No => b[p * n + j],
        Transpose::Yes => b[j * k + p],
    };
    (0..m * n)
        .map(|ij| (0..k).map(|p| at(ij / n, p) * bt(p, ij % n)).sum())
        .collect()
}

#[test]
fn matmul_gradients_match_central_differences_for_every_transpose() {
    let be = backend();
    let (m, n, k) = (5, 4, 3);
    let mut rng = rng(1);
    for ta in [Transpose::No, Transpose::Yes] {
        for tb in [Transpose::No, Transpose::Yes] {
            // Stored shapes: a is m×k (k×m transposed), b is k×n (n×k transposed).
            let a = uniform(&mut rng, m * k, -1.0, 1.0);
            let b = uniform(&mut rng, k * n, -1.0, 1.0);
            let r = uniform(&mut rng, m * n, -1.0, 1.0);
            let product = |a: &Vec<f64>, b: &Vec<f64>| -> Result<Vec<f64>> {
                // beta = 0 must not read c.
                let mut c = vec![f64::NAN; m * n];
                be.matmul(a, ta, b, tb, &mut c, m, n, k, 0.0)?;
                Ok(c)
            };
            let loss = |a: &Vec<f64>, b: &Vec<f64>| Ok(project(&r, &product(a, b)?));
            assert_close(
                &format!("matmul {ta:?}/{tb:?} forward"),
                &product(&a, &b).unwrap(),
                &naive_matmul(&a, ta, &b, tb, m, n, k),
                1e-12,
            );

            // dC = r. d op(a) = r·op(b)ᵀ (m×k); stored transposed: op(b)·rᵀ (k×m).
            let mut da = vec![f64::NAN; m * k];
            match ta {
                Transpose::No => be.matmul(&r, Transpose::No, &b, flip(tb), &mut da, m, k, n, 0.0),
                Transpose::Yes => be.matmul(&b, tb, &r, Transpose::Yes, &mut da, k, m, n, 0.0),
            }
            .unwrap();
            // d op(b) = op(a)ᵀ·r (k×n); stored transposed: rᵀ·op(a) (n×k).
            let mut db = vec![f64::NAN; k * n];
            match tb {
                Transpose::No => be.matmul(&a, flip(ta), &r, Transpose::No, &mut db, k, n, m, 0.0),
                Transpose::Yes => be.matmul(&r, Transpose::Yes, &a, ta, &mut db, n, k, m, 0.0),
            }
            .unwrap();

            assert_gradient(&format!("matmul {ta:?}/{tb:?} d/da"), &da, |i, d| {
                loss(&moved(&a, i, d), &b)
            });
            assert_gradient(&format!("matmul {ta:?}/{tb:?} d/db"), &db, |i, d| {
                loss(&a, &moved(&b, i, d))
            });
        }
    }
}

#[test]
fn bias_act_gradients_match_central_differences_for_every_activation() {
    let be = backend();
    let (rows, cols) = (5, 4);
    let mut rng = rng(2);
    let acts = Activation::HIDDEN.into_iter().chain([Activation::Identity]);
    for act in acts {
        let bias = uniform(&mut rng, cols, -0.5, 0.5);
        // Pick the pre-activation x + bias away from ReLU's kink, then back out x.
        let z = away_from_zero(&mut rng, rows * cols, 0.05, 2.0);
        let x: Vec<f64> = z
            .iter()
            .enumerate()
            .map(|(i, z)| z - bias[i % cols])
            .collect();
        assert!(x.iter().all(|v| v.abs() > 1e-3));
        let r = uniform(&mut rng, rows * cols, -1.0, 1.0);
        let forward = |x: &Vec<f64>, bias: &Vec<f64>| -> Result<Vec<f64>> {
            let mut y = x.clone();
            be.bias_act(&mut y, Some(bias), act, rows, cols)?;
            Ok(y)
        };
        let loss = |x: &Vec<f64>, bias: &Vec<f64>| Ok(project(&r, &forward(x, bias)?));

        // No bias is the same as a zero bias.
        let mut no_bias = x.clone();
        be.bias_act(&mut no_bias, None, act, rows, cols).unwrap();
        assert_close(
            &format!("bias_act {act} without bias"),
            &no_bias,
            &forward(&x, &vec![0.0; cols]).unwrap(),
            0.0,
        );

        let y = forward(&x, &bias).unwrap();
        let mut dx = r.clone();
        be.act_backward(&y, &mut dx, act, rows * cols).unwrap();
        let mut dbias = vec![f64::NAN; cols];
        be.sum_rows(&dx, rows, cols, &mut dbias).unwrap();

        assert_gradient(&format!("bias_act {act} d/dx"), &dx, |i, d| {
            loss(&moved(&x, i, d), &bias)
        });
        assert_gradient(&format!("bias_act {act} d/dbias"), &dbias, |i, d| {
            loss(&x, &moved(&bias, i, d))
        });
    }
}

/// What one batch-norm forward leaves behind.
struct BnRun {
    y: Vec<f64>,
    xhat: Vec<f64>,
    invstd: Vec<f64>,
    running_mean: Vec<f64>,
    running_var: Vec<f64>,
}

/// One batch-norm forward from the given running statistics.
#[allow(clippy::too_many_arguments)]
fn bn_forward(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    rows: usize,
    cols: usize,
    mode: BatchNormMode,
) -> Result<BnRun> {
    let be = backend();
    let (gamma, beta) = (gamma.to_vec(), beta.to_vec());
    let mut run = BnRun {
        y: vec![f64::NAN; rows * cols],
        xhat: vec![f64::NAN; rows * cols],
        invstd: vec![f64::NAN; cols],
        running_mean: running_mean.to_vec(),
        running_var: running_var.to_vec(),
    };
    let bufs = BatchNormBuffers {
        gamma: &gamma,
        beta: &beta,
        running_mean: &mut run.running_mean,
        running_var: &mut run.running_var,
        xhat: &mut run.xhat,
        invstd: &mut run.invstd,
    };
    be.batchnorm_forward(&x.to_vec(), &mut run.y, bufs, rows, cols, BN_EPS, mode)?;
    Ok(run)
}

/// A `rows × cols` input whose columns have different means and scales.
fn bn_input(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f64> {
    let shift = uniform(rng, cols, -2.0, 2.0);
    let scale = uniform(rng, cols, 0.5, 3.0);
    uniform(rng, rows * cols, -1.0, 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, u)| shift[i % cols] + scale[i % cols] * u)
        .collect()
}

/// Per-column batch mean and summed squared deviation, computed directly.
fn column_stats(x: &[f64], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mean: Vec<f64> = (0..cols)
        .map(|c| (0..rows).map(|r| x[r * cols + c]).sum::<f64>() / rows as f64)
        .collect();
    let ss: Vec<f64> = (0..cols)
        .map(|c| {
            (0..rows)
                .map(|r| (x[r * cols + c] - mean[c]).powi(2))
                .sum::<f64>()
        })
        .collect();
    (mean, ss)
}

#[test]
fn batchnorm_backward_matches_central_differences() {
    let be = backend();
    let (rows, cols) = (5, 4);
    let mut rng = rng(3);
    for mode in [
        BatchNormMode::TrainFrozen,
        BatchNormMode::Train { momentum: 0.1 },
    ] {
        let x = bn_input(&mut rng, rows, cols);
        let gamma = uniform(&mut rng, cols, 0.5, 2.0);
        let beta = uniform(&mut rng, cols, -1.0, 1.0);
        let running_mean = vec![0.0; cols];
        let running_var = vec![1.0; cols];
        let r = uniform(&mut rng, rows * cols, -1.0, 1.0);
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| -> Result<f64> {
            let run = bn_forward(
                x,
                gamma,
                beta,
                &running_mean,
                &running_var,
                rows,
                cols,
                mode,
            )?;
            Ok(project(&r, &run.y))
        };

        let run = bn_forward(
            &x,
            &gamma,
            &beta,
            &running_mean,
            &running_var,
            rows,
            cols,
            mode,
        )
        .unwrap();
        let mut dx = vec![f64::NAN; rows * cols];
        let mut dgamma = vec![f64::NAN; cols];
        let mut dbeta = vec![f64::NAN; cols];
        be.batchnorm_backward(
            &r,
            &run.xhat,
            &gamma,
            &run.invstd,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            rows,
            cols,
        )
        .unwrap();

        assert_gradient(&format!("batchnorm {mode:?} d/dx"), &dx, |i, d| {
            loss(&moved(&x, i, d), &gamma, &beta)
        });
        assert_gradient(&format!("batchnorm {mode:?} d/dgamma"), &dgamma, |i, d| {
            loss(&x, &moved(&gamma, i, d), &beta)
        });
        assert_gradient(&format!("batchnorm {mode:?} d/dbeta"), &dbeta, |i, d| {
            loss(&x, &gamma, &moved(&beta, i, d))
        });
    }
}

#[test]
fn batchnorm_train_normalises_with_biased_batch_variance() {
    let (rows, cols) = (5, 4);
    let mut rng = rng(4);
    let x = bn_input(&mut rng, rows, cols);
    let gamma = uniform(&mut rng, cols, 0.5, 2.0);
    let beta = uniform(&mut rng, cols, -1.0, 1.0);
    let (mean, ss) = column_stats(&x, rows, cols);
    let invstd: Vec<f64> = ss
        .iter()
        .map(|s| 1.0 / (s / rows as f64 + BN_EPS).sqrt())
        .collect();
    let want: Vec<f64> = (0..rows * cols)
        .map(|i| {
            let c = i % cols;
            (x[i] - mean[c]) * invstd[c] * gamma[c] + beta[c]
        })
        .collect();
    for mode in [
        BatchNormMode::TrainFrozen,
        BatchNormMode::Train { momentum: 0.1 },
    ] {
        let run = bn_forward(
            &x,
            &gamma,
            &beta,
            &vec![0.0; cols],
            &vec![1.0; cols],
            rows,
            cols,
            mode,
        )
        .unwrap();
        assert_close(&format!("{mode:?} y"), &run.y, &want, 1e-12);
        assert_close(&format!("{mode:?} invstd"), &run.invstd, &invstd, 1e-12);
    }
}

#[test]
fn batchnorm_eval_uses_running_statistics() {
    let (rows, cols) = (5, 4);
    let mut rng = rng(5);
    let x = bn_input(&mut rng, rows, cols);
    let gamma = uniform(&mut rng, cols, 0.5, 2.0);
    let beta = uniform(&mut rng, cols, -1.0, 1.0);
    let running_mean = uniform(&mut rng, cols, -1.0, 1.0);
    let running_var = uniform(&mut rng, cols, 0.2, 3.0);
    let run = bn_forward(
        &x,
        &gamma,
        &beta,
        &running_mean,
        &running_var,
        rows,
        cols,
        BatchNormMode::Eval,
    )
    .unwrap();
    let want: Vec<f64> = (0..rows * cols)
        .map(|i| {
            let c = i % cols;
            (x[i] - running_mean[c]) / (running_var[c] + BN_EPS).sqrt() * gamma[c] + beta[c]
        })
        .collect();
    assert_close("eval y", &run.y, &want, 1e-12);
    assert_eq!(run.running_mean, running_mean, "eval changed running_mean");
    assert_eq!(run.running_var, running_var, "eval changed running_var");
}

#[test]
fn batchnorm_train_updates_running_stats_with_unbiased_variance_and_momentum() {
    let (rows, cols) = (5, 4);
    let momentum = 0.1;
    let mut rng = rng(6);
    let gamma = uniform(&mut rng, cols, 0.5, 2.0);
    let beta = uniform(&mut rng, cols, -1.0, 1.0);
    let mut running_mean = uniform(&mut rng, cols, -1.0, 1.0);
    let mut running_var = uniform(&mut rng, cols, 0.2, 3.0);
    // Two steps, so the old running value's weight (1 − momentum) is exercised too.
    for step in 0..2 {
        let x = bn_input(&mut rng, rows, cols);
        let (mean, ss) = column_stats(&x, rows, cols);
        let want_mean: Vec<f64> = (0..cols)
            .map(|c| (1.0 - momentum) * running_mean[c] + momentum * mean[c])
            .collect();
        let want_var: Vec<f64> = (0..cols)
            .map(|c| (1.0 - momentum) * running_var[c] + momentum * ss[c] / (rows - 1) as f64)
            .collect();

        let frozen = bn_forward(
            &x,
            &gamma,
            &beta,
            &running_mean,
            &running_var,
            rows,
            cols,
            BatchNormMode::TrainFrozen,
        )
        .unwrap();
        assert_eq!(frozen.running_mean, running_mean, "TrainFrozen moved mean");
        assert_eq!(frozen.running_var, running_var, "TrainFrozen moved var");

        let run = bn_forward(
            &x,
            &gamma,
            &beta,
            &running_mean,
            &running_var,
            rows,
            cols,
            BatchNormMode::Train { momentum },
        )
        .unwrap();
        assert_close(
            &format!("step {step} running_mean"),
            &run.running_mean,
            &want_mean,
            1e-12,
        );
        assert_close(
            &format!("step {step} running_var"),
            &run.running_var,
            &want_var,
            1e-12,
        );
        running_mean = run.running_mean;
        running_var = run.running_var;
    }
}

#[test]
fn dropout_backward_matches_central_differences_with_mask_held_fixed() {
    let be = backend();
    let len = 5 * 4;
    let mut rng = rng(7);
    let p = 0.3f32;
    let mut mask = vec![f64::NAN; len];
    be.dropout_mask(&mut mask, len, p, 0x5eed).unwrap();
    assert!(mask.contains(&0.0), "mask drops nothing: {mask:?}");
    assert!(mask.iter().any(|&m| m > 0.0), "mask keeps nothing");
    let x = uniform(&mut rng, len, -1.0, 1.0);
    let r = uniform(&mut rng, len, -1.0, 1.0);
    let loss = |x: &Vec<f64>| -> Result<f64> {
        let mut out = vec![f64::NAN; len];
        be.mul(x, &mask, &mut out, len)?;
        Ok(project(&r, &out))
    };
    let mut dx = r.clone();
    be.mul_assign(&mut dx, &mask, len).unwrap();
    assert_gradient("dropout d/dx", &dx, |i, d| loss(&moved(&x, i, d)));
}

#[test]
fn dropout_mask_is_zero_or_inverse_keep_probability() {
    let be = backend();
    let len = 1000;
    let key = 0xd00d;
    for p in [0.0f32, 0.2, 0.5, 0.9] {
        let keep = 1.0 / (1.0 - f64::from(p));
        let mut mask = vec![f64::NAN; len];
        be.dropout_mask(&mut mask, len, p, key).unwrap();
        for (i, &m) in mask.iter().enumerate() {
            let want = if dropout_keep(key, i as u64, p) {
                keep
            } else {
                0.0
            };
            assert!(
                m == want,
                "p={p}: mask[{i}] = {m}, want exactly {want} (0 or 1/(1-p) = {keep})"
            );
        }
        if p > 0.0 {
            assert!(mask.contains(&0.0), "p={p}: nothing dropped");
        }
        assert!(mask.contains(&keep), "p={p}: nothing kept");
    }
}

/// Logits with ordinary rows and two extreme ones (±1000) for log-sum-exp stability.
fn xent_logits(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f64> {
    let mut logits = uniform(rng, rows * cols, -2.0, 2.0);
    logits[3 * cols..4 * cols].copy_from_slice(&[1000.0, 999.0, 1001.5, 998.0]);
    logits[4 * cols..5 * cols].copy_from_slice(&[-1000.0, -1002.0, -999.0, -1001.0]);
    logits
}

/// Mean cross-entropy by the definition (log-sum-exp with the maximum subtracted).
fn reference_xent(logits: &[f64], labels: &[u32], cols: usize) -> f64 {
    let rows = labels.len();
    let total: f64 = logits
        .chunks_exact(cols)
        .zip(labels)
        .map(|(row, &label)| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            lse - row[label as usize]
        })
        .sum();
    total / rows as f64
}

#[test]
fn softmax_xent_gradient_matches_central_differences() {
    let be = backend();
    let (rows, cols) = (5, 4);
    let mut rng = rng(8);
    let logits = xent_logits(&mut rng, rows, cols);
    let labels: Vec<u32> = vec![0, 3, 1, 2, 0];
    let mean_loss = |logits: &Vec<f64>| -> Result<f64> {
        let mut acc = vec![0.0; 2];
        be.softmax_xent(logits, &labels, rows, cols, None, &mut acc)?;
        Ok(acc[0] / rows as f64)
    };

    let loss = mean_loss(&logits).unwrap();
    assert!(loss.is_finite(), "loss {loss} with logits of ±1000");
    let want = reference_xent(&logits, &labels, cols);
    assert!(
        (loss - want).abs() <= 1e-12 * want.abs().max(1.0),
        "loss {loss}, want {want}"
    );

    let mut dlogits = vec![f64::NAN; rows * cols];
    let mut acc = vec![0.0; 2];
    be.softmax_xent(&logits, &labels, rows, cols, Some(&mut dlogits), &mut acc)
        .unwrap();
    assert!(dlogits.iter().all(|g| g.is_finite()), "{dlogits:?}");
    assert!((acc[0] / rows as f64 - loss).abs() <= 1e-12 * loss.abs().max(1.0));
    assert_gradient("softmax_xent d/dlogits", &dlogits, |i, d| {
        mean_loss(&moved(&logits, i, d))
    });
}

#[test]
fn softmax_xent_adds_loss_and_counts_first_maximum_matches() {
    let be = backend();
    let (rows, cols) = (6, 4);
    let logits = vec![
        0.1, 2.0, -1.0, 0.5, // arg-max 1, label 1: correct
        3.0, 2.0, 1.0, 0.0, // arg-max 0, label 2: wrong
        1000.0, 999.0, 1001.5, 998.0, // arg-max 2, label 2: correct
        -1000.0, -1002.0, -999.0, -1001.0, // arg-max 2, label 0: wrong
        0.7, 0.7, 0.1, 0.2, // tie: first maximum 0, label 0: correct
        0.1, 0.9, 0.3, 0.9, // tie: first maximum 1, label 1: correct
    ];
    // Both ties are labelled with their first maximum, so counting the last one instead
    // changes the count.
    let labels: Vec<u32> = vec![1, 2, 2, 0, 0, 1];
    // acc accumulates: start from non-zero values.
    let mut acc = vec![0.25, 2.0];
    be.softmax_xent(&logits, &labels, rows, cols, None, &mut acc)
        .unwrap();
    assert_eq!(acc[1], 2.0 + 4.0, "correct count");
    let want = 0.25 + reference_xent(&logits, &labels, cols) * rows as f64;
    assert!(
        (acc[0] - want).abs() <= 1e-12 * want,
        "loss sum {}, want {want}",
        acc[0]
    );
}

#[test]
fn softmax_xent_rejects_label_out_of_range() {
    let be = backend();
    let (rows, cols) = (3, 4);
    let logits = vec![0.5; rows * cols];
    for bad in [cols as u32, cols as u32 + 7, u32::MAX] {
        let labels = vec![0, 1, bad];
        let mut acc = vec![0.0; 2];
        let mut dlogits = vec![0.0; rows * cols];
        match be.softmax_xent(&logits, &labels, rows, cols, Some(&mut dlogits), &mut acc) {
            Err(Error::Label {
                label,
                row,
                classes,
            }) => {
                assert_eq!((label, row, classes), (bad, 2, cols));
            }
            other => {
                panic!("label {bad} with {cols} classes: expected Error::Label, got {other:?}")
            }
        }
    }
}

#[test]
fn penalty_grad_is_gradient_of_l1_plus_l2() {
    let be = backend();
    let len = 5 * 4;
    let mut rng = rng(9);
    for (l1, l2) in [(0.3, 0.0), (0.0, 0.7), (0.3, 0.7)] {
        let w = away_from_zero(&mut rng, len, 0.05, 2.0);
        // penalty_grad adds to g: check d/dw [Σ g0·w + l1·Σ|w| + l2·Σw²] = g0 + penalty.
        let g0 = uniform(&mut rng, len, -1.0, 1.0);
        let loss = |w: &Vec<f64>| -> Result<f64> {
            Ok(project(&g0, w)
                + l1 * w.iter().map(|v| v.abs()).sum::<f64>()
                + l2 * w.iter().map(|v| v * v).sum::<f64>())
        };
        let mut g = g0.clone();
        be.penalty_grad(&w, &mut g, len, l1, l2).unwrap();
        assert_gradient(&format!("penalty l1={l1} l2={l2} d/dw"), &g, |i, d| {
            loss(&moved(&w, i, d))
        });
    }
}

#[test]
fn sgd_step_matches_pytorch_for_one_and_three_steps() {
    let be = backend();
    let len = 5 * 4;
    let (lr, momentum, weight_decay) = (0.1, 0.9, 0.01);
    let mut rng = rng(10);
    let w0 = uniform(&mut rng, len, -1.0, 1.0);
    let grads: Vec<Vec<f64>> = (0..3).map(|_| uniform(&mut rng, len, -1.0, 1.0)).collect();

    // torch.optim.SGD(momentum=0.9, dampening=0, weight_decay=0.01, nesterov=False).
    let mut want_w = w0.clone();
    let mut want_buf: Option<Vec<f64>> = None;
    let mut w = w0.clone();
    let mut velocity = vec![0.0; len];
    for (step, g) in grads.iter().enumerate() {
        let d_p: Vec<f64> = g
            .iter()
            .zip(&want_w)
            .map(|(g, w)| g + weight_decay * w)
            .collect();
        let buf = match want_buf {
            None => d_p,
            Some(buf) => buf
                .iter()
                .zip(&d_p)
                .map(|(b, d)| momentum * b + d)
                .collect(),
        };
        want_w = want_w.iter().zip(&buf).map(|(w, b)| w - lr * b).collect();
        want_buf = Some(buf);

        be.sgd_step(&mut w, g, &mut velocity, len, lr, momentum, weight_decay)
            .unwrap();
        if step == 0 || step == 2 {
            let n = step + 1;
            assert_close(&format!("sgd w after {n}"), &w, &want_w, 1e-12);
            let buf = want_buf.as_deref().unwrap();
            assert_close(&format!("sgd velocity after {n}"), &velocity, buf, 1e-12);
        }
    }
    assert_ne!(w, w0);
}

#[test]
fn adam_step_matches_pytorch_for_one_and_three_steps() {
    let be = backend();
    let len = 5 * 4;
    let (lr, (beta1, beta2), eps) = (0.01, (0.9, 0.999), 1e-8);
    let mut rng = rng(11);
    for weight_decay in [0.0, 0.01] {
        let w0 = uniform(&mut rng, len, -1.0, 1.0);
        let grads: Vec<Vec<f64>> = (0..3)
            .map(|_| {
                let mut g = uniform(&mut rng, len, -1.0, 1.0);
                // Gradients near eps make the update sensitive to where eps is added.
                g[0] = 3e-9;
                g[1] = -2e-8;
                g
            })
            .collect();

        // torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8, weight_decay, amsgrad=False),
        // written as in the Adam paper with bias-corrected moments.
        let mut want_w = w0.clone();
        let mut want_m = vec![0.0; len];
        let mut want_v = vec![0.0; len];
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
        for (step, g) in (1u32..).zip(&grads) {
            for i in 0..len {
                let g = g[i] + weight_decay * want_w[i];
                want_m[i] = beta1 * want_m[i] + (1.0 - beta1) * g;
                want_v[i] = beta2 * want_v[i] + (1.0 - beta2) * g * g;
                let m_hat = want_m[i] / (1.0 - beta1.powi(step as i32));
                let v_hat = want_v[i] / (1.0 - beta2.powi(step as i32));
                want_w[i] -= lr * m_hat / (v_hat.sqrt() + eps);
            }

            be.adam_step(
                &mut w,
                g,
                &mut m,
                &mut v,
                len,
                lr,
                (beta1, beta2),
                eps,
                weight_decay,
                step,
            )
            .unwrap();
            if step == 1 || step == 3 {
                let what = format!("adam wd={weight_decay} after {step}");
                assert_close(&format!("{what}: w"), &w, &want_w, 1e-12);
                assert_close(&format!("{what}: m"), &m, &want_m, 1e-12);
                assert_close(&format!("{what}: v"), &v, &want_v, 1e-12);
            }
        }
        assert_ne!(w, w0);
    }
}
