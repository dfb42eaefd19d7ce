//! Softmax cross-entropy.

use super::*;

backend_tests!(softmax_xent, softmax_xent_reports_a_bad_label);

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
