//! `impl Backend for CudaBackend`: every op checks its buffers against the shape (the
//! same checks, in the same order, as the CPU backend), then calls its launcher in the
//! op family's file. The `// SAFETY:` comments of the launchers rely on these checks.

use super::CudaBackend;
use super::launch::driver;
use crate::error::check_len;
use crate::{Activation, Backend, BatchNormBuffers, BatchNormMode, Error, Result, Transpose};
use cudarc::driver::CudaSlice;

impl Backend for CudaBackend {
    type F = f32;
    type Buf = CudaSlice<f32>;
    type Bytes<'a> = CudaSlice<u8>;
    type Idx = CudaSlice<u32>;

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
        check_len("copy", "src", src.len(), len)?;
        check_len("copy", "dst", dst.len(), len)?;
        if len == 0 {
            return Ok(());
        }
        self.stream
            .memcpy_dtod(&src.slice(0..len), &mut dst.slice_mut(0..len))
            .map_err(driver(format!("copy: {len} elements on the device")))
    }

    fn fill(&self, buf: &mut CudaSlice<f32>, len: usize, value: f32) -> Result<()> {
        check_len("fill", "buf", buf.len(), len)?;
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
        let op = "gather_batch";
        if channels == 0 || !features.is_multiple_of(channels) {
            return Err(Error::Device(format!(
                "{op}: {features} features do not split into {channels} channels"
            )));
        }
        check_len(op, "order", order.len(), start + rows)?;
        check_len(op, "scale", scale.len(), channels)?;
        check_len(op, "shift", shift.len(), channels)?;
        check_len(op, "x", x.len(), rows * features)?;
        check_len(op, "y", y.len(), rows)?;
        check_len(op, "images", images.len(), labels.len() * features)?;
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
        check_len("matmul", "a", a.len(), m * k)?;
        check_len("matmul", "b", b.len(), k * n)?;
        check_len("matmul", "c", c.len(), m * n)?;
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
        check_len("bias_act", "x", x.len(), rows * cols)?;
        if let Some(b) = bias {
            check_len("bias_act", "bias", b.len(), cols)?;
        }
        self.bias_act_impl(x, bias, act, rows, cols)
    }

    fn act_backward(
        &self,
        y: &CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
        act: Activation,
        len: usize,
    ) -> Result<()> {
        check_len("act_backward", "y", y.len(), len)?;
        check_len("act_backward", "grad", grad.len(), len)?;
        self.act_backward_impl(y, grad, act, len)
    }

    fn sum_rows(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("sum_rows", "x", x.len(), rows * cols)?;
        check_len("sum_rows", "out", out.len(), cols)?;
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
        let op = "batchnorm_forward";
        check_len(op, "x", x.len(), rows * cols)?;
        check_len(op, "y", y.len(), rows * cols)?;
        check_len(op, "xhat", bn.xhat.len(), rows * cols)?;
        for (name, len) in [
            ("gamma", bn.gamma.len()),
            ("beta", bn.beta.len()),
            ("running_mean", bn.running_mean.len()),
            ("running_var", bn.running_var.len()),
            ("invstd", bn.invstd.len()),
        ] {
            check_len(op, name, len, cols)?;
        }
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
        let op = "batchnorm_backward";
        for (name, len) in [("dy", dy.len()), ("xhat", xhat.len()), ("dx", dx.len())] {
            check_len(op, name, len, rows * cols)?;
        }
        for (name, len) in [
            ("gamma", gamma.len()),
            ("invstd", invstd.len()),
            ("dgamma", dgamma.len()),
            ("dbeta", dbeta.len()),
        ] {
            check_len(op, name, len, cols)?;
        }
        self.batchnorm_backward_impl(dy, xhat, gamma, invstd, dx, dgamma, dbeta, rows, cols)
    }

    fn dropout_mask(&self, mask: &mut CudaSlice<f32>, len: usize, p: f32, key: u64) -> Result<()> {
        check_len("dropout_mask", "mask", mask.len(), len)?;
        self.dropout_mask_impl(mask, len, p, key)
    }

    fn mul(
        &self,
        x: &CudaSlice<f32>,
        m: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        check_len("mul", "x", x.len(), len)?;
        check_len("mul", "m", m.len(), len)?;
        check_len("mul", "out", out.len(), len)?;
        self.mul_impl(x, m, out, len)
    }

    fn mul_assign(&self, x: &mut CudaSlice<f32>, m: &CudaSlice<f32>, len: usize) -> Result<()> {
        check_len("mul_assign", "x", x.len(), len)?;
        check_len("mul_assign", "m", m.len(), len)?;
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
        check_len("softmax_xent", "logits", logits.len(), rows * cols)?;
        check_len("softmax_xent", "labels", labels.len(), rows)?;
        check_len("softmax_xent", "acc", acc.len(), 2)?;
        if let Some(d) = &dlogits {
            check_len("softmax_xent", "dlogits", d.len(), rows * cols)?;
        }
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
        check_len("penalty_grad", "w", w.len(), len)?;
        check_len("penalty_grad", "g", g.len(), len)?;
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
        for (name, l) in [("w", w.len()), ("g", g.len()), ("velocity", velocity.len())] {
            check_len("sgd_step", name, l, len)?;
        }
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
        for (name, l) in [
            ("w", w.len()),
            ("g", g.len()),
            ("m", m.len()),
            ("v", v.len()),
        ] {
            check_len("adam_step", name, l, len)?;
        }
        self.adam_step_impl(w, g, m, v, len, lr, betas, eps, weight_decay, step)
    }

    fn grad_stats(&self, g: &CudaSlice<f32>, len: usize, acc: &mut CudaSlice<f32>) -> Result<()> {
        check_len("grad_stats", "g", g.len(), len)?;
        check_len("grad_stats", "acc", acc.len(), 2)?;
        self.grad_stats_impl(g, len, acc)
    }

    fn moments(&self, x: &CudaSlice<f32>, len: usize) -> Result<[f64; 4]> {
        check_len("moments", "x", x.len(), len)?;
        self.moments_impl(x, len)
    }

    fn sq_dist(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>, len: usize) -> Result<f64> {
        check_len("sq_dist", "a", a.len(), len)?;
        check_len("sq_dist", "b", b.len(), len)?;
        self.sq_dist_impl(a, b, len)
    }

    fn dead_columns(&self, x: &CudaSlice<f32>, rows: usize, cols: usize) -> Result<usize> {
        check_len("dead_columns", "x", x.len(), rows * cols)?;
        self.dead_columns_impl(x, rows, cols)
    }
}
