//! `impl Backend for CudaBackend`: every op checks its buffers against the shape with
//! [`crate::shape`] (the checks the CPU backend calls too), then calls its launcher in
//! the op family's file. The `// SAFETY:` comments of the launchers rely on those
//! checks.

use super::CudaBackend;
use super::launch::driver;
use crate::{Activation, Backend, BatchNormBuffers, BatchNormMode, Result, Transpose, shape};
use cudarc::driver::CudaSlice;

impl Backend for CudaBackend {
    type F = f32;
    type Buf = CudaSlice<f32>;
    type Bytes<'a> = CudaSlice<u8>;
    type Idx = CudaSlice<u32>;

    fn buf_len(buf: &CudaSlice<f32>) -> usize {
        buf.len()
    }

    fn name(&self) -> String {
        format!(
            "cuda:{} {} ({})",
            self.device.ordinal, self.device.name, self.device.arch
        )
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.alloc_zeros(len)
    }

    fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>> {
        self.alloc_from(host)
    }

    fn write(&self, dst: &mut CudaSlice<f32>, host: &[f32]) -> Result<()> {
        self.write_start("write", dst, host)
    }

    fn download(&self, buf: &CudaSlice<f32>) -> Result<Vec<f32>> {
        let host = self.read_back(buf, buf.len(), "download")?;
        self.check_faults()?;
        Ok(host)
    }

    fn upload_bytes(&self, host: &[u8]) -> Result<CudaSlice<u8>> {
        self.alloc_from(host)
    }

    fn zeros_idx(&self, len: usize) -> Result<CudaSlice<u32>> {
        self.alloc_zeros(len)
    }

    fn write_idx(&self, dst: &mut CudaSlice<u32>, host: &[u32]) -> Result<()> {
        self.write_start("write_idx", dst, host)
    }

    fn copy(&self, src: &CudaSlice<f32>, dst: &mut CudaSlice<f32>, len: usize) -> Result<()> {
        shape::copy(src.len(), dst.len(), len)?;
        if len == 0 {
            return Ok(());
        }
        self.stream
            .memcpy_dtod(&src.slice(0..len), &mut dst.slice_mut(0..len))
            .map_err(driver(format!("copy: {len} elements on the device")))
    }

    fn fill(&self, buf: &mut CudaSlice<f32>, len: usize, value: f32) -> Result<()> {
        shape::fill(buf.len(), len)?;
        self.fill_impl(buf, len, value)
    }

    fn gather_batch(
        &self,
        images: &CudaSlice<u8>,
        labels: &CudaSlice<u8>,
        order: &CudaSlice<u32>,
        start: usize,
        rows: usize,
        features: usize,
        scale: &CudaSlice<f32>,
        shift: &CudaSlice<f32>,
        channels: usize,
        x: &mut CudaSlice<f32>,
        y: &mut CudaSlice<u32>,
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
        self.gather_batch_impl(
            images, labels, order, start, rows, features, scale, shift, channels, x, y,
        )
    }

    fn matmul(
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
        shape::matmul(a.len(), b.len(), c.len(), m, n, k)?;
        self.matmul_impl(a, ta, b, tb, c, m, n, k, beta)
    }

    fn bias_act(
        &self,
        x: &mut CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        act: Activation,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        shape::bias_act(x.len(), bias.map(CudaSlice::len), rows, cols)?;
        self.bias_act_impl(x, bias, act, rows, cols)
    }

    fn act_backward(
        &self,
        y: &CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
        act: Activation,
        len: usize,
    ) -> Result<()> {
        shape::act_backward(y.len(), grad.len(), len)?;
        self.act_backward_impl(y, grad, act, len)
    }

    fn sum_rows(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape::sum_rows(x.len(), rows, cols, out.len())?;
        self.sum_rows_impl(x, rows, cols, out)
    }

    fn batchnorm_forward(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        bn: BatchNormBuffers<'_, Self>,
        rows: usize,
        cols: usize,
        eps: f64,
        mode: BatchNormMode,
    ) -> Result<()> {
        shape::batchnorm_forward(x.len(), y.len(), bn.lens(), rows, cols)?;
        self.batchnorm_forward_impl(x, y, bn, rows, cols, eps, mode)
    }

    fn batchnorm_backward(
        &self,
        dy: &CudaSlice<f32>,
        xhat: &CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        invstd: &CudaSlice<f32>,
        dx: &mut CudaSlice<f32>,
        dgamma: &mut CudaSlice<f32>,
        dbeta: &mut CudaSlice<f32>,
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
        self.batchnorm_backward_impl(dy, xhat, gamma, invstd, dx, dgamma, dbeta, rows, cols)
    }

    fn dropout_mask(&self, mask: &mut CudaSlice<f32>, len: usize, p: f32, key: u64) -> Result<()> {
        shape::dropout_mask(mask.len(), len)?;
        self.dropout_mask_impl(mask, len, p, key)
    }

    fn mul(
        &self,
        x: &CudaSlice<f32>,
        m: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        shape::mul(x.len(), m.len(), out.len(), len)?;
        self.mul_impl(x, m, out, len)
    }

    fn mul_assign(&self, x: &mut CudaSlice<f32>, m: &CudaSlice<f32>, len: usize) -> Result<()> {
        shape::mul_assign(x.len(), m.len(), len)?;
        self.mul_assign_impl(x, m, len)
    }

    fn softmax_xent(
        &self,
        logits: &CudaSlice<f32>,
        labels: &CudaSlice<u32>,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut CudaSlice<f32>>,
        acc: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape::softmax_xent(
            logits.len(),
            labels.len(),
            rows,
            cols,
            dlogits.as_ref().map(|d| d.len()),
            acc.len(),
        )?;
        self.softmax_xent_impl(logits, labels, rows, cols, dlogits, acc)
    }

    fn penalty_grad(
        &self,
        w: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        len: usize,
        l1: f64,
        l2: f64,
    ) -> Result<()> {
        shape::penalty_grad(w.len(), g.len(), len)?;
        self.penalty_grad_impl(w, g, len, l1, l2)
    }

    fn sgd_step(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        velocity: &mut CudaSlice<f32>,
        len: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<()> {
        shape::sgd_step(w.len(), g.len(), velocity.len(), len)?;
        self.sgd_step_impl(w, g, velocity, len, lr, momentum, weight_decay)
    }

    fn adam_step(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        len: usize,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        step: u32,
    ) -> Result<()> {
        shape::adam_step(w.len(), g.len(), m.len(), v.len(), len)?;
        self.adam_step_impl(w, g, m, v, len, lr, betas, eps, weight_decay, step)
    }

    fn grad_stats(&self, g: &CudaSlice<f32>, len: usize, acc: &mut CudaSlice<f32>) -> Result<()> {
        shape::grad_stats(g.len(), len, acc.len())?;
        self.grad_stats_impl(g, len, acc)
    }

    fn moments(&self, x: &CudaSlice<f32>, len: usize) -> Result<[f64; 4]> {
        shape::moments(x.len(), len)?;
        self.moments_impl(x, len)
    }

    fn sq_dist(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>, len: usize) -> Result<f64> {
        shape::sq_dist(a.len(), b.len(), len)?;
        self.sq_dist_impl(a, b, len)
    }

    fn dead_columns(&self, x: &CudaSlice<f32>, rows: usize, cols: usize) -> Result<usize> {
        shape::dead_columns(x.len(), rows, cols)?;
        self.dead_columns_impl(x, rows, cols)
    }
}
