//! Every backend computes the same functions: each op's test is written once, generic
//! over the backend, and instantiated for each backend by `backend_tests!` (test names
//! `cpu::<op>` and `cuda::<op>`).
//!
//! - Every instance checks the op against a plain f64 reference written here from the
//!   op's definition (not from the CPU code), within f32 tolerances.
//! - The CUDA instance also runs the op on `CpuBackend<f32>` with the same inputs and
//!   requires the same numbers: within 1e-4 relative, and bit for bit where the op is
//!   exact (dropout masks, products, batch gathering, fills and copies).
//!
//! Where CUDA cannot be used the CUDA instances print `skipped: <the probe's reason>`
//! and pass; with `GRADSWEEP_REQUIRE_CUDA=1` they fail instead (the GPU check). Only
//! [`Error::Unavailable`] counts as "cannot be used": any other error fails.

use anyhow::{Context, Result, bail, ensure};
use gradsweep_kernels::rng::dropout_key;
use gradsweep_kernels::{
    Activation, Backend, BatchNormBuffers, BatchNormMode, CpuBackend, CudaBackend, Error,
    Transpose, dropout_keep,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Cpu = CpuBackend<f32>;

fn cuda_required() -> bool {
    std::env::var("GRADSWEEP_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// The CUDA backend on device 0, or `None` after printing why there is none.
fn cuda_backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(dev) => Some(dev),
        Err(e @ Error::Unavailable(_)) if !cuda_required() => {
            println!("skipped: {e}");
            None
        }
        Err(e @ Error::Unavailable(_)) => panic!("GRADSWEEP_REQUIRE_CUDA=1, but {e}"),
        Err(e) => panic!("the CUDA backend failed to start: {e}"),
    }
}

/// Instantiates each named test for the CPU backend (checked against the f64
/// reference) and the CUDA backend (checked against the reference and the CPU twin).
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&super::Cpu::new(2), None)
                }
            )*
        }
        mod cuda {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    match super::cuda_backend() {
                        Some(dev) => super::$name(&dev, Some(&super::Cpu::new(2))),
                        None => Ok(()),
                    }
                }
            )*
        }
    };
}

backend_tests!(
    buffers,
    gather_batch,
    gather_batch_reports_a_bad_sample_index,
    matmul,
    matmul_refuses_short_buffers,
    bias_act,
    act_backward,
    sum_rows,
    batchnorm_forward,
    batchnorm_backward,
    dropout_mask,
    mul_and_mul_assign,
    softmax_xent,
    softmax_xent_reports_a_bad_label,
    penalty_grad,
    sgd_step,
    adam_step,
    grad_stats,
    moments_and_sq_dist,
    dead_columns,
);

#[test]
fn the_cuda_probe_answers_without_panicking() {
    let count = gradsweep_kernels::cuda::available();
    let backend = CudaBackend::new(0);
    match (&count, &backend) {
        (Ok(n), Ok(dev)) => println!("{n} CUDA device(s); device 0 is {}", dev.name()),
        (Err(Error::Unavailable(reason)), Err(Error::Unavailable(_))) => {
            assert!(!reason.is_empty());
            assert!(!cuda_required(), "GRADSWEEP_REQUIRE_CUDA=1 but {reason}");
            println!("skipped: {reason}");
        }
        (Ok(n), Err(e)) => {
            // A driver and a device, but no NVRTC or cuBLAS: still a clear error.
            assert!(matches!(e, Error::Unavailable(_)), "{e}");
            assert!(!cuda_required(), "{n} device(s) but {e}");
            println!("skipped: {e}");
        }
        _ => panic!("inconsistent probe: {count:?} / {backend:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Helpers.

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `|got − want| ≤ atol + rtol·|want|` for every element (NaN never passes).
fn close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) -> Result<()> {
    ensure!(
        got.len() >= want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w).abs();
        // Written so that a NaN difference fails too.
        let within = d <= atol + rtol * w.abs();
        if !within {
            bail!("{what}[{i}]: got {g}, want {w} (|Δ| = {d:e}, rtol {rtol:e}, atol {atol:e})");
        }
    }
    Ok(())
}

/// [`close`] with the default f32 tolerances: 1e-4 relative, `atol` absolute.
fn close4(what: &str, got: &[f32], want: &[f64], atol: f64) -> Result<()> {
    close(what, got, want, 1e-4, atol)
}

/// The same bits (NaNs included).
fn same_bits(what: &str, got: &[f32], want: &[f32]) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        ensure!(
            g.to_bits() == w.to_bits(),
            "{what}[{i}]: got {g}, want {w} (bit for bit)"
        );
    }
    Ok(())
}

fn all_activations() -> Vec<Activation> {
    [Activation::Identity]
        .into_iter()
        .chain(Activation::HIDDEN)
        .collect()
}

/// f(x) by the textbook formula.
fn act64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Identity => x,
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                0.01 * x
            }
        }
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp() - 1.0
            }
        }
    }
}

/// f'(x) from y = f(x), by the textbook formula.
fn dact64(act: Activation, y: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
        Activation::Relu => (y > 0.0) as u8 as f64,
        Activation::LeakyRelu => {
            if y > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Activation::Elu => {
            if y > 0.0 {
                1.0
            } else {
                y + 1.0
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The tests, one per op (or op family).

fn buffers<B: Backend<F = f32>>(dev: &B, _twin: Option<&Cpu>) -> Result<()> {
    let v: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 7.0).collect();
    let mut a = dev.upload(&v)?;
    same_bits("upload", &dev.download(&a)?, &v)?;
    dev.write(&mut a, &[1.0, 2.0, 3.0])?;
    let mut want = v.clone();
    want[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
    same_bits("write", &dev.download(&a)?, &want)?;

    let mut z = dev.zeros(100)?;
    same_bits("zeros", &dev.download(&z)?, &[0.0; 100])?;
    dev.copy(&a, &mut z, 60)?;
    let mut want_z = vec![0.0; 100];
    want_z[..60].copy_from_slice(&want[..60]);
    same_bits("copy", &dev.download(&z)?, &want_z)?;
    dev.fill(&mut z, 10, -2.5)?;
    want_z[..10].fill(-2.5);
    same_bits("fill", &dev.download(&z)?, &want_z)?;

    let mut empty = dev.zeros(0)?;
    ensure!(dev.download(&empty)?.is_empty(), "zeros(0)");
    ensure!(dev.download(&dev.upload(&[])?)?.is_empty(), "upload(&[])");
    dev.write(&mut empty, &[])?;
    dev.copy(&a, &mut z, 0)?;
    dev.fill(&mut z, 0, 9.0)?;
    same_bits("len 0 changes nothing", &dev.download(&z)?, &want_z)?;

    let mut idx = dev.zeros_idx(8)?;
    dev.write_idx(&mut idx, &[1, 2, 3])?;
    ensure!(matches!(
        dev.write_idx(&mut idx, &[0; 9]),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.copy(&a, &mut z, 101),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.write(&mut empty, &[1.0]),
        Err(Error::Shape { .. })
    ));
    ensure!(matches!(
        dev.fill(&mut z, 101, 0.0),
        Err(Error::Shape { .. })
    ));
    Ok(())
}

/// Checks the labels a batch gathered into `y` by a softmax whose arg-max is the
/// expected label of each row: every row must count as correct.
fn check_labels<B: Backend<F = f32>>(
    dev: &B,
    y: &B::Idx,
    want: &[u32],
    classes: usize,
) -> Result<()> {
    let rows = want.len();
    let mut logits = vec![0.0f32; rows * classes];
    for (r, &l) in want.iter().enumerate() {
        logits[r * classes + l as usize] = 1.0;
    }
    let logits = dev.upload(&logits)?;
    let mut acc = dev.zeros(2)?;
    dev.softmax_xent(&logits, y, rows, classes, None, &mut acc)?;
    let acc = dev.download(&acc)?;
    ensure!(
        acc[1] == rows as f32,
        "gathered labels: {} of {rows} match",
        acc[1]
    );
    Ok(())
}

fn gather_batch<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    // 13 features in 3 channels: planes of 4, and one feature past the last plane that
    // the op leaves alone.
    let (samples, channels, features, classes) = (10usize, 3usize, 13usize, 10usize);
    let plane = features / channels;
    let mut r = rng(1);
    let images: Vec<u8> = (0..samples * features).map(|_| r.random()).collect();
    let labels: Vec<u8> = (0..samples)
        .map(|_| r.random_range(0..classes as u8))
        .collect();
    let order: Vec<u32> = vec![9, 2, 7, 0, 4, 4, 1, 8, 3, 5, 6];
    let (start, rows) = (3usize, 6usize);
    let scale = uniform(&mut r, channels, 0.001, 0.02);
    let shift = uniform(&mut r, channels, -2.0, 2.0);

    fn run<B: Backend<F = f32>>(
        dev: &B,
        images: &[u8],
        labels: &[u8],
        order: &[u32],
        (start, rows, features, channels): (usize, usize, usize, usize),
        scale: &[f32],
        shift: &[f32],
    ) -> Result<(Vec<f32>, B::Idx)> {
        let mut order_buf = dev.zeros_idx(order.len())?;
        dev.write_idx(&mut order_buf, order)?;
        let mut x = dev.upload(&vec![7.0; rows * features])?;
        let mut y = dev.zeros_idx(rows)?;
        dev.gather_batch(
            &dev.upload_bytes(images)?,
            &dev.upload_bytes(labels)?,
            &order_buf,
            start,
            rows,
            features,
            &dev.upload(scale)?,
            &dev.upload(shift)?,
            channels,
            &mut x,
            &mut y,
        )?;
        Ok((dev.download(&x)?, y))
    }

    let shape = (start, rows, features, channels);
    let (x, y) = run(dev, &images, &labels, &order, shape, &scale, &shift)?;
    let mut want = vec![7.0f64; rows * features];
    let mut want_labels = Vec::new();
    for row in 0..rows {
        let i = order[start + row] as usize;
        for f in 0..plane * channels {
            let c = f / plane;
            want[row * features + f] =
                images[i * features + f] as f64 * scale[c] as f64 + shift[c] as f64;
        }
        want_labels.push(labels[i] as u32);
    }
    close("gather_batch x", &x, &want, 1e-6, 1e-6)?;
    check_labels(dev, &y, &want_labels, classes)?;
    if let Some(cpu) = twin {
        let (cpu_x, _) = run(cpu, &images, &labels, &order, shape, &scale, &shift)?;
        same_bits("gather_batch x vs cpu", &x, &cpu_x)?;
    }
    Ok(())
}

fn gather_batch_reports_a_bad_sample_index<B: Backend<F = f32>>(
    dev: &B,
    _twin: Option<&Cpu>,
) -> Result<()> {
    let (samples, features) = (4usize, 6usize);
    let images = vec![1u8; samples * features];
    let labels = vec![0u8; samples];
    let mut order = dev.zeros_idx(3)?;
    dev.write_idx(&mut order, &[1, 4, 2])?;
    let mut x = dev.zeros(3 * features)?;
    let mut y = dev.zeros_idx(3)?;
    let (scale, shift) = (dev.upload(&[1.0, 1.0])?, dev.upload(&[0.0, 0.0])?);
    // The CPU refuses at once; the GPU finds out on the device and says so at the next
    // call that waits.
    let outcome = dev
        .gather_batch(
            &dev.upload_bytes(&images)?,
            &dev.upload_bytes(&labels)?,
            &order,
            0,
            3,
            features,
            &scale,
            &shift,
            2,
            &mut x,
            &mut y,
        )
        .and_then(|()| dev.download(&x).map(drop));
    match outcome {
        Err(Error::Device(m)) if m.contains("sample index 4 is out of range for 4 samples") => {}
        other => bail!("expected the bad sample index to be reported, got {other:?}"),
    }
    dev.download(&x).context("the fault is reported once")?;
    // No channels: an error, not a division by zero.
    let outcome = dev.gather_batch(
        &dev.upload_bytes(&images)?,
        &dev.upload_bytes(&labels)?,
        &order,
        0,
        3,
        features,
        &scale,
        &shift,
        0,
        &mut x,
        &mut y,
    );
    ensure!(
        matches!(outcome, Err(Error::Device(_))),
        "channels = 0: {outcome:?}"
    );
    Ok(())
}

fn matmul<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(2);
    for (m, n, k) in [
        (7, 5, 9),
        (1, 300, 3),
        (300, 1, 3),
        (64, 33, 17),
        (2, 3, 1),
        (5, 4, 0),
    ] {
        let a = uniform(&mut r, m * k, -1.0, 1.0);
        let b = uniform(&mut r, k * n, -1.0, 1.0);
        let c0 = uniform(&mut r, m * n, -1.0, 1.0);
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                for beta in [0.0f32, 1.0] {
                    let what = format!("matmul {m}×{n}×{k} {ta:?} {tb:?} β={beta}");
                    let got = matmul_on(dev, &a, ta, &b, tb, &c0, (m, n, k), beta)?;
                    let mut want = vec![0.0f64; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = if beta == 0.0 {
                                0.0
                            } else {
                                c0[i * n + j] as f64
                            };
                            for p in 0..k {
                                let av = if ta == Transpose::No {
                                    a[i * k + p]
                                } else {
                                    a[p * m + i]
                                };
                                let bv = if tb == Transpose::No {
                                    b[p * n + j]
                                } else {
                                    b[j * k + p]
                                };
                                s += av as f64 * bv as f64;
                            }
                            want[i * n + j] = s;
                        }
                    }
                    let atol = 1e-6 * (k as f64 + 1.0);
                    close4(&what, &got, &want, atol)?;
                    if let Some(cpu) = twin {
                        let cpu_c = matmul_on(cpu, &a, ta, &b, tb, &c0, (m, n, k), beta)?;
                        close4(&format!("{what} vs cpu"), &got, &to64(&cpu_c), atol)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn matmul_on<B: Backend<F = f32>>(
    dev: &B,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    c0: &[f32],
    (m, n, k): (usize, usize, usize),
    beta: f32,
) -> Result<Vec<f32>> {
    // With β = 0 the old contents must not be read: NaN would show.
    let init: Vec<f32> = if beta == 0.0 {
        vec![f32::NAN; m * n]
    } else {
        c0.to_vec()
    };
    let mut c = dev.upload(&init)?;
    dev.matmul(
        &dev.upload(a)?,
        ta,
        &dev.upload(b)?,
        tb,
        &mut c,
        m,
        n,
        k,
        beta,
    )?;
    Ok(dev.download(&c)?)
}

fn matmul_refuses_short_buffers<B: Backend<F = f32>>(dev: &B, _twin: Option<&Cpu>) -> Result<()> {
    let a = dev.zeros(6)?;
    let mut c = dev.zeros(3)?;
    let outcome = dev.matmul(&a, Transpose::No, &a, Transpose::No, &mut c, 2, 2, 3, 0.0);
    ensure!(
        matches!(outcome, Err(Error::Shape { buffer: "c", .. })),
        "{outcome:?}"
    );
    Ok(())
}

fn bias_act<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let (rows, cols) = (13usize, 37usize);
    let mut r = rng(3);
    let x = uniform(&mut r, rows * cols, -4.0, 4.0);
    let bias = uniform(&mut r, cols, -1.0, 1.0);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        x: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>> {
        let mut xb = dev.upload(x)?;
        let bias = bias.map(|b| dev.upload(b)).transpose()?;
        dev.bias_act(&mut xb, bias.as_ref(), act, rows, cols)?;
        Ok(dev.download(&xb)?)
    }
    for act in all_activations() {
        for with_bias in [true, false] {
            let what = format!("bias_act {act} bias={with_bias}");
            let b = with_bias.then_some(bias.as_slice());
            let got = run(dev, &x, b, act, rows, cols)?;
            let want: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let z = if with_bias {
                        (v + bias[i % cols]) as f64
                    } else {
                        v as f64
                    };
                    act64(act, z)
                })
                .collect();
            close4(&what, &got, &want, 1e-6)?;
            if let Some(cpu) = twin {
                let cpu_y = run(cpu, &x, b, act, rows, cols)?;
                close4(&format!("{what} vs cpu"), &got, &to64(&cpu_y), 1e-6)?;
            }
        }
    }
    Ok(())
}

fn act_backward<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let len = 1001usize;
    let mut r = rng(4);
    let x = uniform(&mut r, len, -4.0, 4.0);
    let grad = uniform(&mut r, len, -1.0, 1.0);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        y: &[f32],
        grad: &[f32],
        act: Activation,
    ) -> Result<Vec<f32>> {
        let mut g = dev.upload(grad)?;
        dev.act_backward(&dev.upload(y)?, &mut g, act, y.len())?;
        Ok(dev.download(&g)?)
    }
    for act in all_activations() {
        let y: Vec<f32> = x.iter().map(|&v| act.forward(v)).collect();
        let got = run(dev, &y, &grad, act)?;
        let want: Vec<f64> = y
            .iter()
            .zip(&grad)
            .map(|(&y, &g)| g as f64 * dact64(act, y as f64))
            .collect();
        close4(&format!("act_backward {act}"), &got, &want, 1e-6)?;
        if let Some(cpu) = twin {
            let cpu_g = run(cpu, &y, &grad, act)?;
            close4(
                &format!("act_backward {act} vs cpu"),
                &got,
                &to64(&cpu_g),
                1e-6,
            )?;
        }
    }
    Ok(())
}

fn sum_rows<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(5);
    for (rows, cols) in [(300usize, 45usize), (1, 70), (1000, 3), (0, 5)] {
        let x = uniform(&mut r, rows * cols, -1.0, 1.0);
        fn run<B: Backend<F = f32>>(
            dev: &B,
            x: &[f32],
            rows: usize,
            cols: usize,
        ) -> Result<Vec<f32>> {
            let mut out = dev.upload(&vec![f32::NAN; cols])?;
            dev.sum_rows(&dev.upload(x)?, rows, cols, &mut out)?;
            Ok(dev.download(&out)?)
        }
        let got = run(dev, &x, rows, cols)?;
        let want: Vec<f64> = (0..cols)
            .map(|c| (0..rows).map(|r| x[r * cols + c] as f64).sum())
            .collect();
        let what = format!("sum_rows {rows}×{cols}");
        let atol = 1e-6 * rows as f64;
        close4(&what, &got, &want, atol)?;
        if let Some(cpu) = twin {
            close4(
                &format!("{what} vs cpu"),
                &got,
                &to64(&run(cpu, &x, rows, cols)?),
                atol,
            )?;
        }
    }
    Ok(())
}

/// The state of one batch-norm layer, on the host.
#[derive(Clone)]
struct Bn {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    xhat: Vec<f32>,
    invstd: Vec<f32>,
    y: Vec<f32>,
}

fn bn_forward_on<B: Backend<F = f32>>(
    dev: &B,
    x: &[f32],
    s: &Bn,
    rows: usize,
    cols: usize,
    mode: BatchNormMode,
) -> Result<Bn> {
    let (gamma, beta) = (dev.upload(&s.gamma)?, dev.upload(&s.beta)?);
    let mut running_mean = dev.upload(&s.running_mean)?;
    let mut running_var = dev.upload(&s.running_var)?;
    let mut xhat = dev.upload(&s.xhat)?;
    let mut invstd = dev.upload(&s.invstd)?;
    let mut y = dev.upload(&s.y)?;
    let bn = BatchNormBuffers {
        gamma: &gamma,
        beta: &beta,
        running_mean: &mut running_mean,
        running_var: &mut running_var,
        xhat: &mut xhat,
        invstd: &mut invstd,
    };
    dev.batchnorm_forward(&dev.upload(x)?, &mut y, bn, rows, cols, 1e-5, mode)?;
    Ok(Bn {
        gamma: s.gamma.clone(),
        beta: s.beta.clone(),
        running_mean: dev.download(&running_mean)?,
        running_var: dev.download(&running_var)?,
        xhat: dev.download(&xhat)?,
        invstd: dev.download(&invstd)?,
        y: dev.download(&y)?,
    })
}

fn batchnorm_forward<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let eps = 1e-5f64;
    let mut r = rng(6);
    for (rows, cols) in [(64usize, 45usize), (1, 7), (1000, 300)] {
        // Far from zero mean, so that a one-pass variance would lose digits.
        let x: Vec<f32> = uniform(&mut r, rows * cols, -1.0, 1.0)
            .into_iter()
            .map(|v| 30.0 + 2.0 * v)
            .collect();
        let state = Bn {
            gamma: uniform(&mut r, cols, 0.5, 1.5),
            beta: uniform(&mut r, cols, -0.5, 0.5),
            running_mean: uniform(&mut r, cols, -1.0, 1.0),
            running_var: uniform(&mut r, cols, 0.5, 2.0),
            xhat: vec![0.0; rows * cols],
            invstd: vec![0.0; cols],
            y: vec![0.0; rows * cols],
        };
        for mode in [
            BatchNormMode::Train { momentum: 0.1 },
            BatchNormMode::TrainFrozen,
            BatchNormMode::Eval,
        ] {
            let what = format!("batchnorm_forward {rows}×{cols} {mode:?}");
            let got = bn_forward_on(dev, &x, &state, rows, cols, mode)?;
            // The reference, in f64 from the definition.
            let mut y = vec![0.0f64; rows * cols];
            let mut xhat = to64(&state.xhat);
            let mut invstd = to64(&state.invstd);
            let mut rm = to64(&state.running_mean);
            let mut rv = to64(&state.running_var);
            for c in 0..cols {
                let col: Vec<f64> = (0..rows).map(|r| x[r * cols + c] as f64).collect();
                let (g, b) = (state.gamma[c] as f64, state.beta[c] as f64);
                if mode == BatchNormMode::Eval {
                    let inv = 1.0 / (rv[c] + eps).sqrt();
                    for (r, v) in col.iter().enumerate() {
                        y[r * cols + c] = (v - rm[c]) * inv * g + b;
                    }
                    continue;
                }
                let mean = col.iter().sum::<f64>() / rows as f64;
                let ss: f64 = col.iter().map(|v| (v - mean) * (v - mean)).sum();
                let var = ss / rows as f64;
                invstd[c] = 1.0 / (var + eps).sqrt();
                for (r, v) in col.iter().enumerate() {
                    let h = (v - mean) * invstd[c];
                    xhat[r * cols + c] = h;
                    y[r * cols + c] = h * g + b;
                }
                if let BatchNormMode::Train { momentum } = mode {
                    let unbiased = if rows > 1 {
                        ss / (rows - 1) as f64
                    } else {
                        var
                    };
                    rm[c] = (1.0 - momentum) * rm[c] + momentum * mean;
                    rv[c] = (1.0 - momentum) * rv[c] + momentum * unbiased;
                }
            }
            // x̂ of a column 30 ± 2 has lost the bits of its mean: absolute 1e-4.
            close(&format!("{what} y"), &got.y, &y, 1e-4, 1e-4)?;
            close(&format!("{what} xhat"), &got.xhat, &xhat, 1e-4, 1e-4)?;
            close4(&format!("{what} invstd"), &got.invstd, &invstd, 0.0)?;
            close4(
                &format!("{what} running_mean"),
                &got.running_mean,
                &rm,
                1e-6,
            )?;
            close4(&format!("{what} running_var"), &got.running_var, &rv, 1e-6)?;
            if let Some(cpu) = twin {
                let c = bn_forward_on(cpu, &x, &state, rows, cols, mode)?;
                close(&format!("{what} y vs cpu"), &got.y, &to64(&c.y), 1e-4, 1e-4)?;
                close(
                    &format!("{what} xhat vs cpu"),
                    &got.xhat,
                    &to64(&c.xhat),
                    1e-4,
                    1e-4,
                )?;
                close4(
                    &format!("{what} invstd vs cpu"),
                    &got.invstd,
                    &to64(&c.invstd),
                    0.0,
                )?;
                close4(
                    &format!("{what} running_mean vs cpu"),
                    &got.running_mean,
                    &to64(&c.running_mean),
                    1e-6,
                )?;
                close4(
                    &format!("{what} running_var vs cpu"),
                    &got.running_var,
                    &to64(&c.running_var),
                    1e-6,
                )?;
            }
        }
    }
    Ok(())
}

fn batchnorm_backward<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(7);
    for (rows, cols) in [(64usize, 45usize), (1000, 70), (2, 33)] {
        let dy = uniform(&mut r, rows * cols, -1.0, 1.0);
        let xhat = uniform(&mut r, rows * cols, -2.0, 2.0);
        let gamma = uniform(&mut r, cols, 0.5, 1.5);
        let invstd = uniform(&mut r, cols, 0.5, 2.0);
        fn run<B: Backend<F = f32>>(
            dev: &B,
            dy: &[f32],
            xhat: &[f32],
            gamma: &[f32],
            invstd: &[f32],
            rows: usize,
            cols: usize,
        ) -> Result<[Vec<f32>; 3]> {
            let mut dx = dev.upload(&vec![f32::NAN; rows * cols])?;
            let mut dgamma = dev.upload(&vec![f32::NAN; cols])?;
            let mut dbeta = dev.upload(&vec![f32::NAN; cols])?;
            dev.batchnorm_backward(
                &dev.upload(dy)?,
                &dev.upload(xhat)?,
                &dev.upload(gamma)?,
                &dev.upload(invstd)?,
                &mut dx,
                &mut dgamma,
                &mut dbeta,
                rows,
                cols,
            )?;
            Ok([
                dev.download(&dx)?,
                dev.download(&dgamma)?,
                dev.download(&dbeta)?,
            ])
        }
        let [dx, dgamma, dbeta] = run(dev, &dy, &xhat, &gamma, &invstd, rows, cols)?;
        let n = rows as f64;
        let mut want_dx = vec![0.0f64; rows * cols];
        let mut want_dgamma = vec![0.0f64; cols];
        let mut want_dbeta = vec![0.0f64; cols];
        for c in 0..cols {
            let (mut s, mut sh) = (0.0f64, 0.0f64);
            for r in 0..rows {
                s += dy[r * cols + c] as f64;
                sh += dy[r * cols + c] as f64 * xhat[r * cols + c] as f64;
            }
            want_dbeta[c] = s;
            want_dgamma[c] = sh;
            let k = gamma[c] as f64 * invstd[c] as f64;
            for r in 0..rows {
                let i = r * cols + c;
                want_dx[i] = k * (dy[i] as f64 - s / n - xhat[i] as f64 * sh / n);
            }
        }
        let what = format!("batchnorm_backward {rows}×{cols}");
        let atol_sum = 1e-6 * rows as f64;
        close4(&format!("{what} dx"), &dx, &want_dx, 1e-5)?;
        close4(&format!("{what} dgamma"), &dgamma, &want_dgamma, atol_sum)?;
        close4(&format!("{what} dbeta"), &dbeta, &want_dbeta, atol_sum)?;
        if let Some(cpu) = twin {
            let [cdx, cdg, cdb] = run(cpu, &dy, &xhat, &gamma, &invstd, rows, cols)?;
            close4(&format!("{what} dx vs cpu"), &dx, &to64(&cdx), 1e-5)?;
            close4(
                &format!("{what} dgamma vs cpu"),
                &dgamma,
                &to64(&cdg),
                atol_sum,
            )?;
            close4(
                &format!("{what} dbeta vs cpu"),
                &dbeta,
                &to64(&cdb),
                atol_sum,
            )?;
        }
    }
    Ok(())
}

fn dropout_mask<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let cases = [
        (10_007usize, 0.0f32, dropout_key(1, 0, 0)),
        (10_007, 0.2, dropout_key(1, 1, 5)),
        (10_007, 0.5, u64::MAX),
        (1_000_003, 0.5, dropout_key(42, 3, 123_456)),
        (4_099, 0.9, 0),
    ];
    for (len, p, key) in cases {
        let what = format!("dropout_mask len={len} p={p} key={key:#x}");
        let mut mask = dev.upload(&vec![f32::NAN; len + 3])?;
        dev.dropout_mask(&mut mask, len, p, key)?;
        let got = dev.download(&mask)?;
        let scale = (1.0 / (1.0 - p as f64)) as f32;
        let mut want: Vec<f32> = (0..len as u64)
            .map(|i| if dropout_keep(key, i, p) { scale } else { 0.0 })
            .collect();
        want.extend([f32::NAN; 3]);
        same_bits(&what, &got, &want)?;
        if let Some(cpu) = twin {
            let mut m = cpu.upload(&vec![f32::NAN; len + 3])?;
            cpu.dropout_mask(&mut m, len, p, key)?;
            same_bits(&format!("{what} vs cpu"), &got, &m)?;
        }
    }
    Ok(())
}

fn mul_and_mul_assign<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let len = 5003usize;
    let mut r = rng(8);
    let x = uniform(&mut r, len, -3.0, 3.0);
    let m = uniform(&mut r, len, -2.0, 2.0);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        x: &[f32],
        m: &[f32],
        len: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (xb, mb) = (dev.upload(x)?, dev.upload(m)?);
        let mut out = dev.upload(&vec![9.0; len + 1])?;
        dev.mul(&xb, &mb, &mut out, len)?;
        let mut inplace = dev.upload(x)?;
        dev.mul_assign(&mut inplace, &mb, len - 1)?;
        Ok((dev.download(&out)?, dev.download(&inplace)?))
    }
    let (out, inplace) = run(dev, &x, &m, len)?;
    let mut want: Vec<f32> = x.iter().zip(&m).map(|(a, b)| a * b).collect();
    want.push(9.0);
    same_bits("mul", &out, &want)?;
    let mut want_inplace = want[..len].to_vec();
    want_inplace[len - 1] = x[len - 1];
    same_bits("mul_assign", &inplace, &want_inplace)?;
    if let Some(cpu) = twin {
        let (cout, cin) = run(cpu, &x, &m, len)?;
        same_bits("mul vs cpu", &out, &cout)?;
        same_bits("mul_assign vs cpu", &inplace, &cin)?;
    }
    Ok(())
}

fn softmax_xent<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(9);
    for (rows, cols) in [(37usize, 10usize), (1000, 10), (3, 1), (20, 300)] {
        let mut logits = uniform(&mut r, rows * cols, -5.0, 5.0);
        let mut labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
        if cols > 7 && rows > 4 {
            // Ties: the first maximum is the prediction.
            logits[3 * cols + 2] = 10.0;
            logits[3 * cols + 7] = 10.0;
            labels[3] = 7;
            logits[4 * cols + 2] = 10.0;
            logits[4 * cols + 7] = 10.0;
            labels[4] = 2;
        }
        fn run<B: Backend<F = f32>>(
            dev: &B,
            logits: &[f32],
            labels: &[u32],
            rows: usize,
            cols: usize,
            grad: bool,
        ) -> Result<(Vec<f32>, Vec<f32>)> {
            let mut lab = dev.zeros_idx(rows)?;
            dev.write_idx(&mut lab, labels)?;
            let mut acc = dev.upload(&[1.5, 2.0])?;
            let mut d = dev.upload(&vec![f32::NAN; rows * cols])?;
            dev.softmax_xent(
                &dev.upload(logits)?,
                &lab,
                rows,
                cols,
                grad.then_some(&mut d),
                &mut acc,
            )?;
            Ok((dev.download(&acc)?, dev.download(&d)?))
        }
        // The reference.
        let mut loss = 0.0f64;
        let mut correct = 0usize;
        let mut want_d = vec![0.0f64; rows * cols];
        for row in 0..rows {
            let z = &logits[row * cols..(row + 1) * cols];
            let mut best_at = 0;
            for c in 1..cols {
                if z[c] > z[best_at] {
                    best_at = c;
                }
            }
            let max = z[best_at] as f64;
            let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
            let label = labels[row] as usize;
            loss += sum.ln() + max - z[label] as f64;
            correct += (best_at == label) as usize;
            for c in 0..cols {
                let p = (z[c] as f64 - max).exp() / sum;
                want_d[row * cols + c] = (p - (c == label) as u8 as f64) / rows as f64;
            }
        }
        for grad in [false, true] {
            let what = format!("softmax_xent {rows}×{cols} grad={grad}");
            let (acc, d) = run(dev, &logits, &labels, rows, cols, grad)?;
            close(&format!("{what} loss"), &acc[..1], &[1.5 + loss], 1e-5, 0.0)?;
            ensure!(
                acc[1] == 2.0 + correct as f32,
                "{what}: count {} vs {}",
                acc[1],
                2.0 + correct as f32
            );
            if grad {
                close4(&format!("{what} dlogits"), &d, &want_d, 1e-7)?;
            } else {
                ensure!(
                    d.iter().all(|v| v.is_nan()),
                    "{what}: dlogits written without being asked"
                );
            }
            if let Some(cpu) = twin {
                let (cacc, cd) = run(cpu, &logits, &labels, rows, cols, grad)?;
                close(
                    &format!("{what} loss vs cpu"),
                    &acc[..1],
                    &to64(&cacc[..1]),
                    1e-5,
                    0.0,
                )?;
                ensure!(
                    acc[1] == cacc[1],
                    "{what}: count {} vs cpu {}",
                    acc[1],
                    cacc[1]
                );
                if grad {
                    close4(&format!("{what} dlogits vs cpu"), &d, &to64(&cd), 1e-7)?;
                }
            }
        }
    }
    Ok(())
}

fn softmax_xent_reports_a_bad_label<B: Backend<F = f32>>(
    dev: &B,
    _twin: Option<&Cpu>,
) -> Result<()> {
    let (rows, cols) = (5usize, 10usize);
    let logits = dev.upload(&vec![0.0; rows * cols])?;
    let mut labels = dev.zeros_idx(rows)?;
    dev.write_idx(&mut labels, &[1, 2, 10, 3, 4])?;
    let mut acc = dev.zeros(2)?;
    let outcome = dev
        .softmax_xent(&logits, &labels, rows, cols, None, &mut acc)
        .and_then(|()| dev.download(&acc).map(drop));
    match outcome {
        Err(Error::Label {
            label: 10,
            row: 2,
            classes: 10,
        }) => {}
        other => bail!("expected the bad label to be reported, got {other:?}"),
    }
    dev.download(&acc).context("the fault is reported once")?;
    Ok(())
}

fn penalty_grad<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let len = 3001usize;
    let mut r = rng(10);
    let mut w = uniform(&mut r, len, -1.0, 1.0);
    w[10] = 0.0;
    w[11] = -0.0;
    let g = uniform(&mut r, len, -0.1, 0.1);
    let (l1, l2) = (1e-3, 1e-2);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        w: &[f32],
        g: &[f32],
        l1: f64,
        l2: f64,
    ) -> Result<Vec<f32>> {
        let mut gb = dev.upload(g)?;
        dev.penalty_grad(&dev.upload(w)?, &mut gb, w.len(), l1, l2)?;
        Ok(dev.download(&gb)?)
    }
    let got = run(dev, &w, &g, l1, l2)?;
    let want: Vec<f64> = w
        .iter()
        .zip(&g)
        .map(|(&w, &g)| {
            let w = w as f64;
            let sign = if w > 0.0 {
                1.0
            } else if w < 0.0 {
                -1.0
            } else {
                0.0
            };
            g as f64 + l1 * sign + 2.0 * l2 * w
        })
        .collect();
    close4("penalty_grad", &got, &want, 1e-7)?;
    if let Some(cpu) = twin {
        close4(
            "penalty_grad vs cpu",
            &got,
            &to64(&run(cpu, &w, &g, l1, l2)?),
            1e-7,
        )?;
    }
    Ok(())
}

/// Gradients for `steps` optimiser steps over `len` parameters.
fn gradients(seed: u64, steps: usize, len: usize) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (0..steps)
        .map(|_| uniform(&mut r, len, -1.0, 1.0))
        .collect()
}

fn sgd_step<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let len = 1000usize;
    let w0 = uniform(&mut rng(11), len, -1.0, 1.0);
    let grads = gradients(12, 5, len);
    let (lr, mu, wd) = (0.1, 0.9, 1e-3);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        w0: &[f32],
        grads: &[Vec<f32>],
        (lr, mu, wd): (f64, f64, f64),
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut w = dev.upload(w0)?;
        let mut v = dev.zeros(w0.len())?;
        for g in grads {
            dev.sgd_step(&mut w, &dev.upload(g)?, &mut v, w0.len(), lr, mu, wd)?;
        }
        Ok((dev.download(&w)?, dev.download(&v)?))
    }
    let (w, v) = run(dev, &w0, &grads, (lr, mu, wd))?;
    let mut ww = to64(&w0);
    let mut vv = vec![0.0f64; len];
    for g in &grads {
        for i in 0..len {
            let gi = g[i] as f64 + wd * ww[i];
            vv[i] = mu * vv[i] + gi;
            ww[i] -= lr * vv[i];
        }
    }
    close4("sgd_step w", &w, &ww, 1e-6)?;
    close4("sgd_step velocity", &v, &vv, 1e-6)?;
    if let Some(cpu) = twin {
        let (cw, cv) = run(cpu, &w0, &grads, (lr, mu, wd))?;
        close4("sgd_step w vs cpu", &w, &to64(&cw), 1e-6)?;
        close4("sgd_step velocity vs cpu", &v, &to64(&cv), 1e-6)?;
    }
    Ok(())
}

fn adam_step<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let len = 1000usize;
    let w0 = uniform(&mut rng(13), len, -1.0, 1.0);
    let grads = gradients(14, 5, len);
    let (lr, betas, eps, wd) = (1e-2, (0.9, 0.999), 1e-8, 1e-3);
    fn run<B: Backend<F = f32>>(
        dev: &B,
        w0: &[f32],
        grads: &[Vec<f32>],
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        wd: f64,
    ) -> Result<[Vec<f32>; 3]> {
        let mut w = dev.upload(w0)?;
        let mut m = dev.zeros(w0.len())?;
        let mut v = dev.zeros(w0.len())?;
        for (step, g) in grads.iter().enumerate() {
            dev.adam_step(
                &mut w,
                &dev.upload(g)?,
                &mut m,
                &mut v,
                w0.len(),
                lr,
                betas,
                eps,
                wd,
                step as u32 + 1,
            )?;
        }
        Ok([dev.download(&w)?, dev.download(&m)?, dev.download(&v)?])
    }
    let [w, m, v] = run(dev, &w0, &grads, lr, betas, eps, wd)?;
    let mut ww = to64(&w0);
    let mut mm = vec![0.0f64; len];
    let mut vv = vec![0.0f64; len];
    for (step, g) in grads.iter().enumerate() {
        let t = step as i32 + 1;
        for i in 0..len {
            let gi = g[i] as f64 + wd * ww[i];
            mm[i] = betas.0 * mm[i] + (1.0 - betas.0) * gi;
            vv[i] = betas.1 * vv[i] + (1.0 - betas.1) * gi * gi;
            let mhat = mm[i] / (1.0 - betas.0.powi(t));
            let vhat = vv[i] / (1.0 - betas.1.powi(t));
            ww[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
    }
    close4("adam_step w", &w, &ww, 1e-6)?;
    close4("adam_step m", &m, &mm, 1e-6)?;
    close4("adam_step v", &v, &vv, 1e-7)?;
    if let Some(cpu) = twin {
        let [cw, cm, cv] = run(cpu, &w0, &grads, lr, betas, eps, wd)?;
        close4("adam_step w vs cpu", &w, &to64(&cw), 1e-6)?;
        close4("adam_step m vs cpu", &m, &to64(&cm), 1e-6)?;
        close4("adam_step v vs cpu", &v, &to64(&cv), 1e-7)?;
    }
    Ok(())
}

fn grad_stats<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(15);
    let g1 = uniform(&mut r, 1000, -2.0, 2.0);
    let g2 = uniform(&mut r, 1_000_003, -0.01, 0.01);
    fn run<B: Backend<F = f32>>(dev: &B, gs: &[&[f32]]) -> Result<Vec<f32>> {
        let mut acc = dev.upload(&[0.5, 0.1])?;
        for g in gs {
            // One element more on the device than is counted.
            let mut buf = g.to_vec();
            buf.push(1e6);
            dev.grad_stats(&dev.upload(&buf)?, g.len(), &mut acc)?;
        }
        dev.grad_stats(&dev.zeros(0)?, 0, &mut acc)?;
        Ok(dev.download(&acc)?)
    }
    let got = run(dev, &[&g1, &g2])?;
    let norm = |g: &[f32]| g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let maxabs = |g: &[f32]| g.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let want = [
        0.5 + norm(&g1) + norm(&g2),
        maxabs(&g1).max(maxabs(&g2)).max(0.1),
    ];
    close("grad_stats", &got, &want, 1e-6, 0.0)?;
    if let Some(cpu) = twin {
        close(
            "grad_stats vs cpu",
            &got,
            &to64(&run(cpu, &[&g1, &g2])?),
            1e-6,
            0.0,
        )?;
    }
    Ok(())
}

fn moments_and_sq_dist<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let mut r = rng(16);
    for len in [1usize, 1000, 1_000_003] {
        let a = uniform(&mut r, len + 1, 0.5, 1.5);
        let b = uniform(&mut r, len + 1, -1.0, 1.0);
        let (ab, bb) = (dev.upload(&a)?, dev.upload(&b)?);
        let got = dev.moments(&ab, len)?;
        let got_d = dev.sq_dist(&ab, &bb, len)?;
        let s: f64 = a[..len].iter().map(|&v| v as f64).sum();
        let s2: f64 = a[..len].iter().map(|&v| v as f64 * v as f64).sum();
        let m = a[..len].iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let d: f64 = a[..len]
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum();
        let rel = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs();
        ensure!(
            rel(got[0], s) && rel(got[1], s2) && got[2] == m,
            "moments len={len}: {got:?} vs {:?}",
            [s, s2, m]
        );
        ensure!(rel(got_d, d), "sq_dist len={len}: {got_d} vs {d}");
        if let Some(cpu) = twin {
            let (ca, cb) = (cpu.upload(&a)?, cpu.upload(&b)?);
            let c = cpu.moments(&ca, len)?;
            ensure!(
                rel(got[0], c[0]) && rel(got[1], c[1]) && got[2] == c[2],
                "moments vs cpu: {got:?} vs {c:?}"
            );
            let cd = cpu.sq_dist(&ca, &cb, len)?;
            ensure!(rel(got_d, cd), "sq_dist vs cpu: {got_d} vs {cd}");
        }
    }
    let empty = dev.zeros(0)?;
    ensure!(dev.moments(&empty, 0)? == [0.0; 3], "moments of nothing");
    ensure!(dev.sq_dist(&empty, &empty, 0)? == 0.0, "sq_dist of nothing");
    Ok(())
}

fn dead_columns<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    let (rows, cols) = (50usize, 70usize);
    let mut r = rng(17);
    let mut x = uniform(&mut r, rows * cols, -1.0, 0.0);
    let dead = [3usize, 40, 69];
    for c in 0..cols {
        if !dead.contains(&c) {
            let row = r.random_range(0..rows);
            x[row * cols + c] = 0.5;
        }
    }
    x[7 * cols + 40] = 0.0; // zero is not alive
    let xb = dev.upload(&x)?;
    let got = dev.dead_columns(&xb, rows, cols)?;
    ensure!(got == dead.len(), "dead_columns: {got} vs {}", dead.len());
    ensure!(
        dev.dead_columns(&xb, 0, cols)? == cols,
        "no rows: every column is dead"
    );
    if let Some(cpu) = twin {
        ensure!(
            cpu.dead_columns(&cpu.upload(&x)?, rows, cols)? == got,
            "dead_columns vs cpu"
        );
    }
    Ok(())
}
