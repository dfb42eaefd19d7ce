//! Packed ops give each trial exactly what the single op gives it alone: every packed
//! op is run on a group of three trials with different parameters (one of them switched
//! off where the op has switches), and each trial's blocks are compared with the
//! single op run on copies of that trial's blocks on the same backend. On the CPU the
//! two must be equal bit for bit; on CUDA (skipped without a GPU, unless
//! `GRADSWEEP_REQUIRE_CUDA=1`) the products may differ by cuBLAS's choice of batched
//! kernel, so they are held to 1e-5 relative and everything else to the bit.

#![allow(clippy::needless_range_loop)]

use gradsweep_kernels::rng::dropout_key;
use gradsweep_kernels::{
    Activation, AdamHyper, BatchNormBuffers, BatchNormMode, CpuBackend, CudaBackend, Error,
    PackedBackend, PackedBatchNorm, SgdHyper, Transpose,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const G: usize = 3;
/// Trial 1 is off in the ops with switches: its blocks must come back untouched.
const ON: [bool; G] = [true, false, true];

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// `groups` blocks of `per` random values, `stride` apart (the gaps random too).
fn packed(rng: &mut ChaCha8Rng, stride: usize) -> Vec<f32> {
    random(rng, G * stride)
}

fn block(v: &[f32], g: usize, stride: usize, per: usize) -> Vec<f32> {
    v[g * stride..g * stride + per].to_vec()
}

/// Compares trial `g`'s packed block with what the single op gave it.
fn same(what: &str, g: usize, packed: &[f32], alone: &[f32], tolerance: f32) {
    assert_eq!(packed.len(), alone.len(), "{what}, trial {g}");
    for (i, (&p, &a)) in packed.iter().zip(alone).enumerate() {
        let ok = if tolerance == 0.0 {
            p.to_bits() == a.to_bits()
        } else {
            (p - a).abs() <= tolerance * a.abs().max(1.0)
        };
        assert!(ok, "{what}, trial {g}, element {i}: packed {p}, alone {a}");
    }
}

fn check_all<B: PackedBackend<F = f32>>(b: &B, matmul_tolerance: f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    b.reserve_group(G).unwrap();
    let up = |v: &[f32]| b.upload(v).unwrap();
    let down = |v: &B::Buf| b.download(v).unwrap();
    let (rows, cols, k) = (5, 7, 4);
    let n = rows * cols;
    let stride = n + 3; // blocks with gaps between them

    // matmul_batched: a per trial, b shared (stride 0), c accumulating (beta 1).
    let a = packed(&mut rng, rows * k + 1);
    let w = random(&mut rng, k * cols);
    let c0 = packed(&mut rng, stride);
    let mut c = up(&c0);
    b.matmul_batched(
        &up(&a),
        rows * k + 1,
        Transpose::No,
        &up(&w),
        0,
        Transpose::No,
        &mut c,
        stride,
        rows,
        cols,
        k,
        1.0,
        G,
    )
    .unwrap();
    let c = down(&c);
    for g in 0..G {
        let mut alone = up(&block(&c0, g, stride, n));
        let ag = up(&block(&a, g, rows * k + 1, rows * k));
        b.matmul(
            &ag,
            Transpose::No,
            &up(&w),
            Transpose::No,
            &mut alone,
            rows,
            cols,
            k,
            1.0,
        )
        .unwrap();
        same(
            "matmul_batched",
            g,
            &block(&c, g, stride, n),
            &down(&alone),
            matmul_tolerance,
        );
    }
    // Transposed operands, both per trial (the backward products).
    let x = packed(&mut rng, rows * k);
    let dz = packed(&mut rng, n);
    let mut dw = up(&vec![0.0; G * k * cols]);
    b.matmul_batched(
        &up(&x),
        rows * k,
        Transpose::Yes,
        &up(&dz),
        n,
        Transpose::No,
        &mut dw,
        k * cols,
        k,
        cols,
        rows,
        0.0,
        G,
    )
    .unwrap();
    let dw = down(&dw);
    for g in 0..G {
        let mut alone = up(&vec![0.0; k * cols]);
        b.matmul(
            &up(&block(&x, g, rows * k, rows * k)),
            Transpose::Yes,
            &up(&block(&dz, g, n, n)),
            Transpose::No,
            &mut alone,
            k,
            cols,
            rows,
            0.0,
        )
        .unwrap();
        same(
            "matmul_batched ᵀ",
            g,
            &block(&dw, g, k * cols, k * cols),
            &down(&alone),
            matmul_tolerance,
        );
    }

    // bias_act_packed with and without a bias; act_backward_packed.
    let acts = [Activation::Sigmoid, Activation::Relu, Activation::Elu];
    let x0 = packed(&mut rng, stride);
    let bias = random(&mut rng, G * cols);
    for with_bias in [true, false] {
        let mut x = up(&x0);
        let bias_buf = up(&bias);
        b.bias_act_packed(
            &mut x,
            stride,
            with_bias.then_some(&bias_buf),
            &acts,
            &ON,
            rows,
            cols,
        )
        .unwrap();
        let x = down(&x);
        for g in 0..G {
            let mut alone = up(&block(&x0, g, stride, n));
            if ON[g] {
                let bg = up(&block(&bias, g, cols, cols));
                b.bias_act(&mut alone, with_bias.then_some(&bg), acts[g], rows, cols)
                    .unwrap();
            }
            same(
                "bias_act_packed",
                g,
                &block(&x, g, stride, n),
                &down(&alone),
                0.0,
            );
        }
    }
    let y = packed(&mut rng, stride)
        .iter()
        .map(|v| v.abs() / 3.0)
        .collect::<Vec<_>>();
    let grad0 = packed(&mut rng, stride);
    let mut grad = up(&grad0);
    b.act_backward_packed(&up(&y), &mut grad, stride, &acts, &ON, n)
        .unwrap();
    let grad = down(&grad);
    for g in 0..G {
        let mut alone = up(&block(&grad0, g, stride, n));
        if ON[g] {
            b.act_backward(&up(&block(&y, g, stride, n)), &mut alone, acts[g], n)
                .unwrap();
        }
        same(
            "act_backward_packed",
            g,
            &block(&grad, g, stride, n),
            &down(&alone),
            0.0,
        );
    }

    // sum_rows_packed.
    let mut out = up(&vec![0.0; G * cols]);
    b.sum_rows_packed(&up(&x0), stride, rows, cols, &mut out, G)
        .unwrap();
    let out = down(&out);
    for g in 0..G {
        let mut alone = up(&vec![0.0; cols]);
        b.sum_rows(&up(&block(&x0, g, stride, n)), rows, cols, &mut alone)
            .unwrap();
        same(
            "sum_rows_packed",
            g,
            &block(&out, g, cols, cols),
            &down(&alone),
            0.0,
        );
    }

    // Batch norm forward (training, then evaluation) and backward.
    let gamma = random(&mut rng, G * cols);
    let beta = random(&mut rng, G * cols);
    let rm0 = random(&mut rng, G * cols);
    let rv0: Vec<f32> = random(&mut rng, G * cols)
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect();
    for mode in [BatchNormMode::Train { momentum: 0.1 }, BatchNormMode::Eval] {
        let (mut yb, mut rm, mut rv) = (up(&grad0), up(&rm0), up(&rv0));
        let (mut xhat, mut invstd) = (up(&vec![0.0; G * stride]), up(&vec![0.0; G * cols]));
        b.batchnorm_forward_packed(
            &up(&x0),
            &mut yb,
            stride,
            PackedBatchNorm {
                gamma: &up(&gamma),
                beta: &up(&beta),
                running_mean: &mut rm,
                running_var: &mut rv,
                xhat: &mut xhat,
                invstd: &mut invstd,
            },
            rows,
            cols,
            1e-5,
            mode,
            &ON,
        )
        .unwrap();
        let (yb, rm, xhat, invstd) = (down(&yb), down(&rm), down(&xhat), down(&invstd));
        for g in 0..G {
            let mut ya = up(&block(&grad0, g, stride, n));
            let mut rma = up(&block(&rm0, g, cols, cols));
            let mut rva = up(&block(&rv0, g, cols, cols));
            let mut xa = up(&vec![0.0; n]);
            let mut ia = up(&vec![0.0; cols]);
            if ON[g] {
                b.batchnorm_forward(
                    &up(&block(&x0, g, stride, n)),
                    &mut ya,
                    BatchNormBuffers {
                        gamma: &up(&block(&gamma, g, cols, cols)),
                        beta: &up(&block(&beta, g, cols, cols)),
                        running_mean: &mut rma,
                        running_var: &mut rva,
                        xhat: &mut xa,
                        invstd: &mut ia,
                    },
                    rows,
                    cols,
                    1e-5,
                    mode,
                )
                .unwrap();
            }
            same(
                "batchnorm_forward_packed y",
                g,
                &block(&yb, g, stride, n),
                &down(&ya),
                0.0,
            );
            same(
                "batchnorm_forward_packed running_mean",
                g,
                &block(&rm, g, cols, cols),
                &down(&rma),
                0.0,
            );
            if ON[g] && mode != BatchNormMode::Eval {
                same(
                    "batchnorm_forward_packed xhat",
                    g,
                    &block(&xhat, g, stride, n),
                    &down(&xa),
                    0.0,
                );
                same(
                    "batchnorm_forward_packed invstd",
                    g,
                    &block(&invstd, g, cols, cols),
                    &down(&ia),
                    0.0,
                );
            }
        }
    }
    let (mut dx, mut dgamma, mut dbeta) =
        (up(&x0), up(&vec![0.0; G * cols]), up(&vec![0.0; G * cols]));
    b.batchnorm_backward_packed(
        &up(&grad0),
        &up(&y),
        &mut dx,
        stride,
        &up(&gamma),
        &up(&rv0),
        &mut dgamma,
        &mut dbeta,
        rows,
        cols,
        &ON,
    )
    .unwrap();
    let (dx, dgamma) = (down(&dx), down(&dgamma));
    for g in 0..G {
        let mut dxa = up(&block(&x0, g, stride, n));
        let (mut dga, mut dba) = (up(&vec![0.0; cols]), up(&vec![0.0; cols]));
        if ON[g] {
            b.batchnorm_backward(
                &up(&block(&grad0, g, stride, n)),
                &up(&block(&y, g, stride, n)),
                &up(&block(&gamma, g, cols, cols)),
                &up(&block(&rv0, g, cols, cols)),
                &mut dxa,
                &mut dga,
                &mut dba,
                rows,
                cols,
            )
            .unwrap();
        }
        same(
            "batchnorm_backward_packed dx",
            g,
            &block(&dx, g, stride, n),
            &down(&dxa),
            0.0,
        );
        same(
            "batchnorm_backward_packed dgamma",
            g,
            &block(&dgamma, g, cols, cols),
            &down(&dga),
            0.0,
        );
    }

    // Dropout masks with per-trial probabilities and keys; products and copies.
    let ps = [0.5f32, 0.3, 0.2];
    let keys: Vec<u64> = (0..G as u64).map(|g| dropout_key(100 + g, 1, 7)).collect();
    let mut mask = up(&grad0);
    b.dropout_mask_packed(&mut mask, stride, n, &ps, &keys, &ON)
        .unwrap();
    let mask = down(&mask);
    let mut prod = up(&grad0);
    b.mul_packed(&up(&x0), &up(&mask), &mut prod, stride, n, &ON)
        .unwrap();
    let prod = down(&prod);
    let mut inplace = up(&x0);
    b.mul_assign_packed(&mut inplace, &up(&mask), stride, n, &ON)
        .unwrap();
    let inplace = down(&inplace);
    let mut copied = up(&grad0);
    b.copy_packed(&up(&x0), &mut copied, stride, n, &ON)
        .unwrap();
    let copied = down(&copied);
    for g in 0..G {
        let mut ma = up(&block(&grad0, g, stride, n));
        let mut pa = up(&block(&grad0, g, stride, n));
        let mut ia = up(&block(&x0, g, stride, n));
        let mut ca = up(&block(&grad0, g, stride, n));
        if ON[g] {
            b.dropout_mask(&mut ma, n, ps[g], keys[g]).unwrap();
            let mg = up(&block(&mask, g, stride, n));
            b.mul(&up(&block(&x0, g, stride, n)), &mg, &mut pa, n)
                .unwrap();
            b.mul_assign(&mut ia, &mg, n).unwrap();
            b.copy(&up(&block(&x0, g, stride, n)), &mut ca, n).unwrap();
        }
        same(
            "dropout_mask_packed",
            g,
            &block(&mask, g, stride, n),
            &down(&ma),
            0.0,
        );
        same(
            "mul_packed",
            g,
            &block(&prod, g, stride, n),
            &down(&pa),
            0.0,
        );
        same(
            "mul_assign_packed",
            g,
            &block(&inplace, g, stride, n),
            &down(&ia),
            0.0,
        );
        same(
            "copy_packed",
            g,
            &block(&copied, g, stride, n),
            &down(&ca),
            0.0,
        );
    }

    // Softmax cross-entropy: labels per trial, then shared (stride 0).
    let labels: Vec<u32> = (0..G * rows)
        .map(|_| rng.random_range(0..cols as u32))
        .collect();
    for labels_stride in [rows, 0] {
        let mut lab = b.zeros_idx(labels.len()).unwrap();
        b.write_idx(&mut lab, &labels).unwrap();
        let mut dl = up(&grad0);
        let mut acc = up(&[0.5, 1.0, 0.25, 2.0, 0.0, 3.0]);
        b.softmax_xent_packed(
            &up(&x0),
            stride,
            &lab,
            labels_stride,
            rows,
            cols,
            Some(&mut dl),
            &mut acc,
            &ON,
        )
        .unwrap();
        let (dl, acc) = (down(&dl), down(&acc));
        for g in 0..G {
            let mut la = b.zeros_idx(rows).unwrap();
            let start = g * labels_stride;
            b.write_idx(&mut la, &labels[start..start + rows]).unwrap();
            let mut da = up(&block(&grad0, g, stride, n));
            let start_acc = [0.5, 1.0, 0.25, 2.0, 0.0, 3.0];
            let mut aa = up(&start_acc[2 * g..2 * g + 2]);
            if ON[g] {
                b.softmax_xent(
                    &up(&block(&x0, g, stride, n)),
                    &la,
                    rows,
                    cols,
                    Some(&mut da),
                    &mut aa,
                )
                .unwrap();
            }
            same(
                "softmax_xent_packed dlogits",
                g,
                &block(&dl, g, stride, n),
                &down(&da),
                0.0,
            );
            same(
                "softmax_xent_packed acc",
                g,
                &block(&acc, g, 2, 2),
                &down(&aa),
                0.0,
            );
        }
    }

    // Penalties and optimiser steps with per-trial hyper-parameters.
    let (l1, l2) = ([1e-3, 0.0, 2e-4], [0.0, 1e-2, 5e-4]);
    let mut pg = up(&grad0);
    b.penalty_grad_packed(&up(&x0), &mut pg, stride, n, &l1, &l2, &ON)
        .unwrap();
    let pg = down(&pg);
    let sgd = [
        SgdHyper {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        SgdHyper {
            lr: 0.01,
            momentum: 0.0,
            weight_decay: 1e-4,
        },
        SgdHyper {
            lr: 0.05,
            momentum: 0.5,
            weight_decay: 1e-3,
        },
    ];
    let adam = [
        AdamHyper {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        },
        AdamHyper {
            lr: 1e-2,
            betas: (0.8, 0.99),
            eps: 1e-6,
            weight_decay: 1e-4,
        },
        AdamHyper {
            lr: 3e-4,
            betas: (0.95, 0.9999),
            eps: 1e-8,
            weight_decay: 1e-2,
        },
    ];
    let (mut ws, mut vs) = (up(&x0), up(&y));
    let (mut wa, mut ma, mut va) = (up(&x0), up(&grad0), up(&y));
    for step in 1..=3 {
        b.sgd_step_packed(&mut ws, &up(&grad0), &mut vs, stride, n, &sgd, &ON)
            .unwrap();
        b.adam_step_packed(
            &mut wa,
            &up(&grad0),
            &mut ma,
            &mut va,
            stride,
            n,
            &adam,
            &[step; G],
            &ON,
        )
        .unwrap();
    }
    let (ws, wa) = (down(&ws), down(&wa));
    for g in 0..G {
        let mut pa = up(&block(&grad0, g, stride, n));
        let gg = up(&block(&grad0, g, stride, n));
        let (mut w1, mut v1) = (up(&block(&x0, g, stride, n)), up(&block(&y, g, stride, n)));
        let mut w2 = up(&block(&x0, g, stride, n));
        let (mut m2, mut v2) = (
            up(&block(&grad0, g, stride, n)),
            up(&block(&y, g, stride, n)),
        );
        if ON[g] {
            b.penalty_grad(&up(&block(&x0, g, stride, n)), &mut pa, n, l1[g], l2[g])
                .unwrap();
            for step in 1..=3 {
                let h = sgd[g];
                b.sgd_step(&mut w1, &gg, &mut v1, n, h.lr, h.momentum, h.weight_decay)
                    .unwrap();
                let h = adam[g];
                b.adam_step(
                    &mut w2,
                    &gg,
                    &mut m2,
                    &mut v2,
                    n,
                    h.lr,
                    h.betas,
                    h.eps,
                    h.weight_decay,
                    step,
                )
                .unwrap();
            }
        }
        same(
            "penalty_grad_packed",
            g,
            &block(&pg, g, stride, n),
            &down(&pa),
            0.0,
        );
        same(
            "sgd_step_packed",
            g,
            &block(&ws, g, stride, n),
            &down(&w1),
            0.0,
        );
        same(
            "adam_step_packed",
            g,
            &block(&wa, g, stride, n),
            &down(&w2),
            0.0,
        );
    }

    // Reductions.
    let mut acc = up(&[0.0, 0.0, 1.0, 5.0, 0.0, 0.0]);
    b.grad_stats_packed(&up(&x0), stride, n, &mut acc, &ON)
        .unwrap();
    let acc = down(&acc);
    let moments = b.moments_packed(&up(&x0), stride, n, G).unwrap();
    let dist = b
        .sq_dist_packed(&up(&x0), &up(&grad0), stride, n, G)
        .unwrap();
    let dead = b
        .dead_columns_packed(&up(&grad0), stride, rows, cols, G)
        .unwrap();
    for g in 0..G {
        let xg = up(&block(&x0, g, stride, n));
        let mut aa = up(&[[0.0, 0.0], [1.0, 5.0], [0.0, 0.0]][g]);
        if ON[g] {
            b.grad_stats(&xg, n, &mut aa).unwrap();
        }
        same(
            "grad_stats_packed",
            g,
            &block(&acc, g, 2, 2),
            &down(&aa),
            0.0,
        );
        assert_eq!(
            moments[g],
            b.moments(&xg, n).unwrap(),
            "moments_packed, trial {g}"
        );
        let other = up(&block(&grad0, g, stride, n));
        assert_eq!(
            dist[g],
            b.sq_dist(&xg, &other, n).unwrap(),
            "sq_dist_packed, trial {g}"
        );
        assert_eq!(
            dead[g],
            b.dead_columns(&other, rows, cols).unwrap(),
            "dead_columns_packed, trial {g}"
        );
    }

    // Batches gathered with an order per trial.
    let (samples, features, channels) = (9, 6, 3);
    let images: Vec<u8> = (0..samples * features).map(|_| rng.random()).collect();
    let label_bytes: Vec<u8> = (0..samples).map(|_| rng.random_range(0..10)).collect();
    let orders: Vec<u32> = (0..G * samples)
        .map(|_| rng.random_range(0..samples as u32))
        .collect();
    let (img, lab) = (
        b.upload_bytes(&images).unwrap(),
        b.upload_bytes(&label_bytes).unwrap(),
    );
    let mut ord = b.zeros_idx(orders.len()).unwrap();
    b.write_idx(&mut ord, &orders).unwrap();
    let (scale, shift) = (up(&[0.5, 0.25, 2.0]), up(&[-1.0, 0.0, 1.0]));
    let (start, brows) = (2, 4);
    let mut xb = up(&vec![0.0; G * brows * features]);
    let mut yb = b.zeros_idx(G * brows).unwrap();
    b.gather_batch_packed(
        &img,
        &lab,
        &ord,
        samples,
        start,
        brows,
        features,
        &scale,
        &shift,
        channels,
        &mut xb,
        brows * features,
        &mut yb,
        brows,
        G,
    )
    .unwrap();
    let xb = down(&xb);
    for g in 0..G {
        let mut og = b.zeros_idx(samples).unwrap();
        b.write_idx(&mut og, &orders[g * samples..(g + 1) * samples])
            .unwrap();
        let mut xa = up(&vec![0.0; brows * features]);
        let mut ya = b.zeros_idx(brows).unwrap();
        b.gather_batch(
            &img, &lab, &og, start, brows, features, &scale, &shift, channels, &mut xa, &mut ya,
        )
        .unwrap();
        let per = brows * features;
        same(
            "gather_batch_packed",
            g,
            &block(&xb, g, per, per),
            &down(&xa),
            0.0,
        );
    }
}

#[test]
fn cpu_packed_ops_give_each_trial_its_bits_alone() {
    check_all(&CpuBackend::<f32>::new(2), 0.0);
}

#[test]
fn packed_ops_refuse_a_group_they_cannot_hold() {
    let cpu = CpuBackend::<f32>::new(1);
    let mut x = vec![0.0f32; 10];
    let e = cpu
        .bias_act_packed(&mut x, 4, None, &[Activation::Relu; 3], &[true; 3], 2, 2)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bias_act_packed: buffer `x` holds 10 elements, the shape needs 12"
    );
}

#[test]
fn cuda_packed_ops_give_each_trial_what_it_gets_alone() {
    match CudaBackend::new(0) {
        Ok(dev) => check_all(&dev, 1e-5),
        Err(e @ Error::Unavailable(_))
            if std::env::var("GRADSWEEP_REQUIRE_CUDA").as_deref() != Ok("1") =>
        {
            println!("skipped: {e}")
        }
        Err(e) => panic!("the CUDA backend failed to start: {e}"),
    }
}
