//! Batch normalisation, forward in every mode and backward.

use super::*;

backend_tests!(batchnorm_forward, batchnorm_backward);

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
