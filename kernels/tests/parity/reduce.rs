//! Reductions: bias gradients, gradient statistics and the diagnostics.

use super::*;

backend_tests!(sum_rows, grad_stats, moments_and_sq_dist, dead_columns);

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
        let a = uniform(&mut r, len + 1, -1.5, 1.5);
        let b = uniform(&mut r, len + 1, -1.0, 1.0);
        let (ab, bb) = (dev.upload(&a)?, dev.upload(&b)?);
        let got = dev.moments(&ab, len)?;
        let got_d = dev.sq_dist(&ab, &bb, len)?;
        let s: f64 = a[..len].iter().map(|&v| v as f64).sum();
        let s2: f64 = a[..len].iter().map(|&v| v as f64 * v as f64).sum();
        let sa: f64 = a[..len].iter().map(|&v| (v as f64).abs()).sum();
        let m = a[..len].iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
        let d: f64 = a[..len]
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum();
        let rel = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs();
        ensure!(
            rel(got[0], s) && rel(got[1], s2) && rel(got[2], sa) && got[3] == m,
            "moments len={len}: {got:?} vs {:?}",
            [s, s2, sa, m]
        );
        ensure!(rel(got_d, d), "sq_dist len={len}: {got_d} vs {d}");
        if let Some(cpu) = twin {
            let (ca, cb) = (cpu.upload(&a)?, cpu.upload(&b)?);
            let c = cpu.moments(&ca, len)?;
            ensure!(
                rel(got[0], c[0]) && rel(got[1], c[1]) && rel(got[2], c[2]) && got[3] == c[3],
                "moments vs cpu: {got:?} vs {c:?}"
            );
            let cd = cpu.sq_dist(&ca, &cb, len)?;
            ensure!(rel(got_d, cd), "sq_dist vs cpu: {got_d} vs {cd}");
        }
    }
    let empty = dev.zeros(0)?;
    ensure!(dev.moments(&empty, 0)? == [0.0; 4], "moments of nothing");
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
