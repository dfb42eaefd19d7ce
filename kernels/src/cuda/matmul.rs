//! Matrix multiply through cuBLAS `sgemm`, and the one place that turns our row-major
//! product into cuBLAS's column-major one.
//!
//! A row-major `r × c` matrix, read column-major, is its `c × r` transpose. So the
//! row-major `C = op(A)·op(B)` is, to cuBLAS, `Cᵀ = op(B)ᵀ·op(A)ᵀ`: the operands swap
//! places, the dimensions `m` and `n` swap, and each operand's transpose flag is ours
//! unchanged (a row-major `A` read column-major is already `Aᵀ`).

use super::CudaBackend;
use crate::{Error, Result, Transpose};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::CudaSlice;
use std::ffi::c_int;

fn dim(what: &str, v: usize) -> Result<c_int> {
    c_int::try_from(v)
        .map_err(|_| Error::Device(format!("matmul: {what} = {v} is too large for cuBLAS")))
}

/// The cuBLAS call that computes the row-major `c[m×n] = op(a)·op(b) + beta·c` of
/// [`crate::Backend::matmul`]: its configuration and its two operands in cuBLAS's
/// order (`b` first, then `a`). `beta` is 0 or 1 as on the CPU (any non-zero value
/// accumulates).
pub(crate) fn column_major<'x, T: ?Sized>(
    a: &'x T,
    ta: Transpose,
    b: &'x T,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) -> Result<(GemmConfig<f32>, &'x T, &'x T)> {
    let op = |t| match t {
        Transpose::No => cublasOperation_t::CUBLAS_OP_N,
        Transpose::Yes => cublasOperation_t::CUBLAS_OP_T,
    };
    // Leading dimensions: a row-major operand's row length, i.e. its stored column
    // count. cuBLAS wants at least 1 even where a dimension is 0.
    let ld_b = match tb {
        Transpose::No => n,  // b stored k×n
        Transpose::Yes => k, // b stored n×k
    };
    let ld_a = match ta {
        Transpose::No => k,  // a stored m×k
        Transpose::Yes => m, // a stored k×m
    };
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: dim("n", n)?,
        n: dim("m", m)?,
        k: dim("k", k)?,
        alpha: 1.0,
        lda: dim("ldb", ld_b.max(1))?,
        ldb: dim("lda", ld_a.max(1))?,
        beta: if beta != 0.0 { 1.0 } else { 0.0 },
        ldc: dim("n", n.max(1))?,
    };
    Ok((cfg, b, a))
}

impl CudaBackend {
    /// See [`crate::Backend::matmul`]; shapes already checked.
    pub(super) fn matmul_impl(
        &self,
        a: &CudaSlice<f32>,
        ta: Transpose,
        b: &CudaSlice<f32>,
        tb: Transpose,
        c: &mut CudaSlice<f32>,
        m: usize,
        n: usize,
        k: usize,
        beta: f32,
    ) -> Result<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            // An empty sum: c = 0, or c unchanged when accumulating. Done here rather
            // than trusting every cuBLAS version's handling of k = 0.
            return if beta == 0.0 {
                self.fill_impl(c, m * n, 0.0)
            } else {
                Ok(())
            };
        }
        let (cfg, first, second) = column_major(a, ta, b, tb, m, n, k, beta)?;
        // cuBLAS calls the driver in the thread's current context, which cudarc sets
        // for its own calls but not for this one.
        self.device
            .ctx
            .bind_to_thread()
            .map_err(super::launch::driver("binding the context for cuBLAS"))?;
        // SAFETY: `crate::shape::matmul` checked a.len() >= m*k, b.len() >= k*n, c.len() >= m*n, and
        // `column_major` gives cuBLAS exactly those extents (its leading dimensions are
        // the stored row lengths); all three buffers live on this backend's stream,
        // which the handle uses, and `c` is borrowed mutably, so it aliases neither.
        unsafe { self.blas.gemm(cfg, first, second, c) }.map_err(|e| Error::Cuda {
            call: format!("cublasSgemm ({m}×{k} · {k}×{n})"),
            message: format!("{:?}", e.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cuBLAS `sgemm` computes, by its definition: column-major, `C = α·op(A)·op(B)
    /// + β·C` with `op(A)` `M×K`, `op(B)` `K×N`.
    fn blas_sgemm(cfg: &GemmConfig<f32>, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
        let at = |i: usize, p: usize| match cfg.transa {
            cublasOperation_t::CUBLAS_OP_N => a[i + p * lda],
            _ => a[p + i * lda],
        };
        let bt = |p: usize, j: usize| match cfg.transb {
            cublasOperation_t::CUBLAS_OP_N => b[p + j * ldb],
            _ => b[j + p * ldb],
        };
        for j in 0..n {
            for i in 0..m {
                let s: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
                let old = if cfg.beta == 0.0 {
                    0.0
                } else {
                    c[i + j * ldc] as f64
                };
                c[i + j * ldc] = (cfg.alpha as f64 * s + cfg.beta as f64 * old) as f32;
            }
        }
    }

    /// The row-major product by its definition.
    fn row_major(
        a: &[f32],
        ta: Transpose,
        b: &[f32],
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
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
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn the_column_major_call_computes_the_row_major_product() {
        for (m, n, k) in [
            (7, 5, 9),
            (1, 300, 3),
            (300, 1, 3),
            (4, 6, 1),
            (3, 3, 0),
            (2, 9, 17),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let want = row_major(&a, ta, &b, tb, m, n, k);
                    for beta in [0.0f32, 1.0] {
                        let (cfg, first, second) =
                            column_major(a.as_slice(), ta, b.as_slice(), tb, m, n, k, beta)
                                .unwrap();
                        assert!(cfg.lda >= 1 && cfg.ldb >= 1 && cfg.ldc >= cfg.m.max(1));
                        let mut c = vec![if beta == 0.0 { f32::NAN } else { 1.0 }; m * n];
                        blas_sgemm(&cfg, first, second, &mut c);
                        for (i, (got, want)) in c.iter().zip(&want).enumerate() {
                            let want = want + beta;
                            assert!(
                                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                                "{m}×{n}×{k} {ta:?} {tb:?} β={beta} at {i}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn any_nonzero_beta_accumulates_as_on_the_cpu() {
        let x = [0.0f32; 4];
        let (cfg, _, _) =
            column_major(&x[..], Transpose::No, &x[..], Transpose::No, 2, 2, 1, 0.5).unwrap();
        assert_eq!(cfg.beta, 1.0);
    }
}
