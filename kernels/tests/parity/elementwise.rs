//! The elementwise ops: batch gathering, bias + activation and its derivative, dropout
//! masks, products and penalties.

use super::*;

backend_tests!(
    gather_batch,
    gather_batch_reports_a_bad_sample_index,
    bias_act,
    act_backward,
    dropout_mask,
    mul_and_mul_assign,
    penalty_grad
);

fn gather_batch<B: Backend<F = f32>>(dev: &B, twin: Option<&Cpu>) -> Result<()> {
    // 15 features in 3 channels: planes of 5.
    let (samples, channels, features, classes) = (10usize, 3usize, 15usize, 10usize);
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
    // Channels that do not divide the features: an error, not a silently short batch.
    let outcome = dev.gather_batch(
        &dev.upload_bytes(&images)?,
        &dev.upload_bytes(&labels)?,
        &order,
        0,
        3,
        features,
        &scale,
        &shift,
        4,
        &mut x,
        &mut y,
    );
    ensure!(
        matches!(&outcome, Err(Error::Device(m)) if m.contains("6 features do not split into 4 channels")),
        "channels = 4 for 6 features: {outcome:?}"
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
