//! Matrix multiply: every transpose combination, odd shapes, accumulation.

use super::*;

backend_tests!(matmul, matmul_refuses_short_buffers);

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
