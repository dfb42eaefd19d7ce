//! Optimiser steps, over several iterations.

use super::*;

backend_tests!(sgd_step, adam_step);

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

/// Gradients for `steps` optimiser steps over `len` parameters.
fn gradients(seed: u64, steps: usize, len: usize) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    (0..steps)
        .map(|_| uniform(&mut r, len, -1.0, 1.0))
        .collect()
}
