//! Matrix multiply through the `gemm` crate, transposes folded into the strides.

use crate::{Float, Transpose};
use gemm::Parallelism;

/// Below this many multiply-adds a product runs on one thread: splitting small or
/// skinny shapes (a 128×256×10 output layer) costs more in synchronisation than it
/// gains.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// `c[m×n] = op(a)·op(b) + beta·c` on row-major slices (see [`crate::Backend::matmul`]).
pub fn matmul<T: Float>(
    a: &[T],
    ta: Transpose,
    b: &[T],
    tb: Transpose,
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    beta: T,
    threads: usize,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Row-major `op(a)` (m×k): element (i, p) lives at i*k + p, or at p*m + i when
    // stored transposed. `gemm` takes (column stride, row stride) per operand.
    let (a_cs, a_rs) = match ta {
        Transpose::No => (1, k as isize),
        Transpose::Yes => (m as isize, 1),
    };
    let (b_cs, b_rs) = match tb {
        Transpose::No => (1, n as isize),
        Transpose::Yes => (k as isize, 1),
    };
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_FLOPS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let accumulate = beta != T::ZERO;
    // SAFETY: the asserts above guarantee every operand holds its shape; `c` is borrowed
    // mutably and cannot alias `a` or `b`. `gemm` computes dst = alpha·dst + beta·lhs·rhs
    // and reads dst only when `read_dst` is true; `T` is f32 or f64, which it supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        a: &[f64],
        ta: Transpose,
        b: &[f64],
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
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
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn every_transpose_combination_matches_the_definition() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let want = naive(&a, ta, &b, tb, m, n, k);
                let mut c = vec![f64::NAN; m * n];
                matmul(&a, ta, &b, tb, &mut c, m, n, k, 0.0, 1);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "{ta:?} {tb:?}: {x} vs {y}");
                }
                // beta = 1 accumulates.
                let mut acc = vec![1.0; m * n];
                matmul(&a, ta, &b, tb, &mut acc, m, n, k, 1.0, 2);
                for (x, y) in acc.iter().zip(&want) {
                    assert!((x - (y + 1.0)).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn threaded_product_is_bit_identical_to_single_threaded() {
        let (m, n, k) = (256, 192, 128);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 17 % 89) as f32 - 44.0) / 40.0)
            .collect();
        let mut one = vec![0.0f32; m * n];
        let mut two = vec![0.0f32; m * n];
        matmul(
            &a,
            Transpose::No,
            &b,
            Transpose::No,
            &mut one,
            m,
            n,
            k,
            0.0,
            1,
        );
        matmul(
            &a,
            Transpose::No,
            &b,
            Transpose::No,
            &mut two,
            m,
            n,
            k,
            0.0,
            2,
        );
        assert_eq!(one, two);
    }
}
