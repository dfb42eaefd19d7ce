//! The CPU backend: buffers are `Vec`s, matrix multiply is the `gemm` crate, every other
//! op is a plain loop in its op-family module.

mod elementwise;
mod loss;
mod matmul;
mod norm;
mod optim;
mod packed;
mod reduce;

pub use matmul::PARALLEL_MIN_FLOPS;

/// From this many elements up, optimiser steps split the work over the threads.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;
/// Elements per parallel task of an elementwise op.
const ELEMENT_CHUNK: usize = 1 << 14;

use crate::shape;
use crate::{Activation, Backend, BatchNormBuffers, BatchNormMode, Float, Result, Transpose};
use rayon::prelude::*;
use std::marker::PhantomData;

/// The CPU backend in element type `T` (`f32` to train, `f64` to check gradients).
#[derive(Debug, Clone)]
pub struct CpuBackend<T> {
    threads: usize,
    _elem: PhantomData<T>,
}

impl<T: Float> CpuBackend<T> {
    /// A backend whose matrix multiplies use up to `threads` threads of rayon's pool.
    pub fn new(threads: usize) -> Self {
        CpuBackend {
            threads: threads.max(1),
            _elem: PhantomData,
        }
    }

    /// The number of threads matrix multiplies may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// SGD on whole slices, split over the threads when large (each element's update
    /// is independent: chunks give the same bits).
    fn sgd_slices(&self, w: &mut [T], g: &[T], v: &mut [T], lr: f64, momentum: f64, wd: f64) {
        if self.threads > 1 && w.len() >= PARALLEL_MIN_ELEMENTS {
            w.par_chunks_mut(ELEMENT_CHUNK)
                .zip(v.par_chunks_mut(ELEMENT_CHUNK))
                .zip(g.par_chunks(ELEMENT_CHUNK))
                .for_each(|((w, v), g)| optim::sgd(w, g, v, lr, momentum, wd));
        } else {
            optim::sgd(w, g, v, lr, momentum, wd);
        }
    }

    /// Adam on whole slices, split over the threads when large.
    #[allow(clippy::too_many_arguments)]
    fn adam_slices(
        &self,
        w: &mut [T],
        g: &[T],
        m: &mut [T],
        v: &mut [T],
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        wd: f64,
        step: u32,
    ) {
        if self.threads > 1 && w.len() >= PARALLEL_MIN_ELEMENTS {
            w.par_chunks_mut(ELEMENT_CHUNK)
                .zip(m.par_chunks_mut(ELEMENT_CHUNK))
                .zip(v.par_chunks_mut(ELEMENT_CHUNK))
                .zip(g.par_chunks(ELEMENT_CHUNK))
                .for_each(|(((w, m), v), g)| optim::adam(w, g, m, v, lr, betas, eps, wd, step));
        } else {
            optim::adam(w, g, m, v, lr, betas, eps, wd, step);
        }
    }
}

impl<T: Float> Backend for CpuBackend<T> {
    type F = T;
    type Buf = Vec<T>;
    type Bytes<'a> = &'a [u8];
    type Idx = Vec<u32>;

    fn buf_len(buf: &Vec<T>) -> usize {
        buf.len()
    }

    fn name(&self) -> String {
        let threads = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        format!("cpu {} ({} {threads})", T::NAME, self.threads)
    }

    fn zeros(&self, len: usize) -> Result<Vec<T>> {
        Ok(vec![T::ZERO; len])
    }

    fn upload(&self, host: &[T]) -> Result<Vec<T>> {
        Ok(host.to_vec())
    }

    fn write(&self, dst: &mut Vec<T>, host: &[T]) -> Result<()> {
        shape::write("write", dst.len(), host.len())?;
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn download(&self, buf: &Vec<T>) -> Result<Vec<T>> {
        Ok(buf.clone())
    }

    fn upload_bytes<'a>(&self, host: &'a [u8]) -> Result<&'a [u8]> {
        Ok(host)
    }

    fn zeros_idx(&self, len: usize) -> Result<Vec<u32>> {
        Ok(vec![0; len])
    }

    fn write_idx(&self, dst: &mut Vec<u32>, host: &[u32]) -> Result<()> {
        shape::write("write_idx", dst.len(), host.len())?;
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn copy(&self, src: &Vec<T>, dst: &mut Vec<T>, len: usize) -> Result<()> {
        shape::copy(src.len(), dst.len(), len)?;
        dst[..len].copy_from_slice(&src[..len]);
        Ok(())
    }

    fn fill(&self, buf: &mut Vec<T>, len: usize, value: T) -> Result<()> {
        shape::fill(buf.len(), len)?;
        buf[..len].fill(value);
        Ok(())
    }

    fn gather_batch(
        &self,
        images: &&[u8],
        labels: &&[u8],
        order: &Vec<u32>,
        start: usize,
        rows: usize,
        features: usize,
        scale: &Vec<T>,
        shift: &Vec<T>,
        channels: usize,
        x: &mut Vec<T>,
        y: &mut Vec<u32>,
    ) -> Result<()> {
        shape::gather_batch(
            images.len(),
            labels.len(),
            order.len(),
            start,
            rows,
            features,
            scale.len(),
            shift.len(),
            channels,
            x.len(),
            y.len(),
        )?;
        let order = &order[start..start + rows];
        let n = labels.len();
        if let Some(&bad) = order.iter().find(|&&i| i as usize >= n) {
            return Err(crate::Error::Device(format!(
                "gather_batch: sample index {bad} is out of range for {n} samples"
            )));
        }
        elementwise::gather_batch(
            images,
            labels,
            order,
            features,
            &scale[..channels],
            &shift[..channels],
            x,
            y,
        );
        Ok(())
    }

    fn matmul(
        &self,
        a: &Vec<T>,
        ta: Transpose,
        b: &Vec<T>,
        tb: Transpose,
        c: &mut Vec<T>,
        m: usize,
        n: usize,
        k: usize,
        beta: T,
    ) -> Result<()> {
        shape::matmul(a.len(), b.len(), c.len(), m, n, k)?;
        matmul::matmul(a, ta, b, tb, c, m, n, k, beta, self.threads);
        Ok(())
    }

    fn bias_act(
        &self,
        x: &mut Vec<T>,
        bias: Option<&Vec<T>>,
        act: Activation,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        shape::bias_act(x.len(), bias.map(Vec::len), rows, cols)?;
        elementwise::bias_act(&mut x[..rows * cols], bias.map(|b| &b[..cols]), act, cols);
        Ok(())
    }

    fn act_backward(
        &self,
        y: &Vec<T>,
        grad: &mut Vec<T>,
        act: Activation,
        len: usize,
    ) -> Result<()> {
        shape::act_backward(y.len(), grad.len(), len)?;
        elementwise::act_backward(&y[..len], &mut grad[..len], act);
        Ok(())
    }

    fn sum_rows(&self, x: &Vec<T>, rows: usize, cols: usize, out: &mut Vec<T>) -> Result<()> {
        shape::sum_rows(x.len(), rows, cols, out.len())?;
        reduce::sum_rows(x, rows, cols, out);
        Ok(())
    }

    fn batchnorm_forward(
        &self,
        x: &Vec<T>,
        y: &mut Vec<T>,
        bn: BatchNormBuffers<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
    ) -> Result<()> {
        shape::batchnorm_forward(x.len(), y.len(), bn.lens(), rows, cols)?;
        let slices = norm::BnSlices {
            gamma: bn.gamma,
            beta: bn.beta,
            running_mean: bn.running_mean,
            running_var: bn.running_var,
            xhat: bn.xhat,
            invstd: bn.invstd,
        };
        norm::forward(x, y, slices, rows, cols, eps, mode);
        Ok(())
    }

    fn batchnorm_backward(
        &self,
        dy: &Vec<T>,
        xhat: &Vec<T>,
        gamma: &Vec<T>,
        invstd: &Vec<T>,
        dx: &mut Vec<T>,
        dgamma: &mut Vec<T>,
        dbeta: &mut Vec<T>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        shape::batchnorm_backward(
            dy.len(),
            xhat.len(),
            gamma.len(),
            invstd.len(),
            dx.len(),
            dgamma.len(),
            dbeta.len(),
            rows,
            cols,
        )?;
        norm::backward(dy, xhat, gamma, invstd, dx, dgamma, dbeta, rows, cols);
        Ok(())
    }

    fn dropout_mask(&self, mask: &mut Vec<T>, len: usize, p: f32, key: u64) -> Result<()> {
        shape::dropout_mask(mask.len(), len)?;
        elementwise::dropout_mask(&mut mask[..len], p, key);
        Ok(())
    }

    fn mul(&self, x: &Vec<T>, m: &Vec<T>, out: &mut Vec<T>, len: usize) -> Result<()> {
        shape::mul(x.len(), m.len(), out.len(), len)?;
        for ((o, &a), &b) in out[..len].iter_mut().zip(&x[..len]).zip(&m[..len]) {
            *o = a * b;
        }
        Ok(())
    }

    fn mul_assign(&self, x: &mut Vec<T>, m: &Vec<T>, len: usize) -> Result<()> {
        shape::mul_assign(x.len(), m.len(), len)?;
        for (a, &b) in x[..len].iter_mut().zip(&m[..len]) {
            *a *= b;
        }
        Ok(())
    }

    fn softmax_xent(
        &self,
        logits: &Vec<T>,
        labels: &Vec<u32>,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut Vec<T>>,
        acc: &mut Vec<T>,
    ) -> Result<()> {
        shape::softmax_xent(
            logits.len(),
            labels.len(),
            rows,
            cols,
            dlogits.as_ref().map(|d| d.len()),
            acc.len(),
        )?;
        loss::softmax_xent(
            logits,
            labels,
            rows,
            cols,
            dlogits.map(|d| d.as_mut_slice()),
            acc,
        )
    }

    fn penalty_grad(&self, w: &Vec<T>, g: &mut Vec<T>, len: usize, l1: f64, l2: f64) -> Result<()> {
        shape::penalty_grad(w.len(), g.len(), len)?;
        elementwise::penalty_grad(&w[..len], &mut g[..len], l1, l2);
        Ok(())
    }

    fn sgd_step(
        &self,
        w: &mut Vec<T>,
        g: &Vec<T>,
        velocity: &mut Vec<T>,
        len: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<()> {
        shape::sgd_step(w.len(), g.len(), velocity.len(), len)?;
        self.sgd_slices(
            &mut w[..len],
            &g[..len],
            &mut velocity[..len],
            lr,
            momentum,
            weight_decay,
        );
        Ok(())
    }

    fn adam_step(
        &self,
        w: &mut Vec<T>,
        g: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
        len: usize,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        step: u32,
    ) -> Result<()> {
        shape::adam_step(w.len(), g.len(), m.len(), v.len(), len)?;
        self.adam_slices(
            &mut w[..len],
            &g[..len],
            &mut m[..len],
            &mut v[..len],
            lr,
            betas,
            eps,
            weight_decay,
            step,
        );
        Ok(())
    }

    fn grad_stats(&self, g: &Vec<T>, len: usize, acc: &mut Vec<T>) -> Result<()> {
        shape::grad_stats(g.len(), len, acc.len())?;
        reduce::grad_stats(&g[..len], acc);
        Ok(())
    }

    fn moments(&self, x: &Vec<T>, len: usize) -> Result<[f64; 4]> {
        shape::moments(x.len(), len)?;
        Ok(reduce::moments(&x[..len]))
    }

    fn sq_dist(&self, a: &Vec<T>, b: &Vec<T>, len: usize) -> Result<f64> {
        shape::sq_dist(a.len(), b.len(), len)?;
        Ok(reduce::sq_dist(&a[..len], &b[..len]))
    }

    fn dead_columns(&self, x: &Vec<T>, rows: usize, cols: usize) -> Result<usize> {
        shape::dead_columns(x.len(), rows, cols)?;
        Ok(reduce::dead_columns(x, rows, cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_optimiser_steps_give_the_single_threaded_bits() {
        let len = PARALLEL_MIN_ELEMENTS * 3 + 17;
        let w0: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 900.0)
            .collect();
        let g: Vec<f32> = (0..len)
            .map(|i| ((i * 104_729 % 997) as f32 - 498.0) / 700.0)
            .collect();
        let run = |threads: usize| {
            let cpu = CpuBackend::<f32>::new(threads);
            let (mut w_sgd, mut vel) = (w0.clone(), vec![0.0; len]);
            let (mut w_adam, mut m, mut v) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
            for step in 1..=3 {
                cpu.sgd_step(&mut w_sgd, &g, &mut vel, len, 0.1, 0.9, 1e-2)
                    .unwrap();
                cpu.adam_step(
                    &mut w_adam,
                    &g,
                    &mut m,
                    &mut v,
                    len,
                    1e-3,
                    (0.9, 0.999),
                    1e-8,
                    1e-2,
                    step,
                )
                .unwrap();
            }
            (w_sgd, vel, w_adam, m, v)
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let parallel = pool.install(|| run(2));
        assert_eq!(parallel, run(1));
    }
}
