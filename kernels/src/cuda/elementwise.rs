//! Launchers of `kernels/elementwise.cu`: batch gathering, bias + activation, dropout,
//! products, penalties and fill.
//!
//! Every launcher is called by `impl Backend for CudaBackend` after the buffer lengths
//! were checked against the shape, which the `// SAFETY:` lines rely on.

use super::CudaBackend;
use super::launch::{count, count2, driver, grid_1d};
use super::table::activation_code;
use crate::activation::LEAKY_RELU_SLOPE;
use crate::{Activation, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The slope of leaky ReLU as the CPU rounds it (`T::from_f64(LEAKY_RELU_SLOPE)`).
fn slope() -> f32 {
    LEAKY_RELU_SLOPE as f32
}

impl CudaBackend {
    /// See [`crate::Backend::gather_batch`]; `samples` = the number of labels.
    pub(super) fn gather_batch_impl(
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
        let n = count2(op, rows, features)?;
        if n == 0 {
            return Ok(());
        }
        let start = count(op, "start", start)?;
        let rows = count(op, "rows", rows)?;
        let plane = count(op, "features / channels", features / channels)?;
        let features = count(op, "features", features)?;
        let channels = count(op, "channels", channels)?;
        let samples = count(op, "samples", labels.len())?;
        let mut scratch = self.scratch();
        let mut launch = self.stream.launch_builder(&self.kernels().gather_batch);
        launch
            .arg(images)
            .arg(labels)
            .arg(order)
            .arg(&start)
            .arg(&rows)
            .arg(&features)
            .arg(&plane)
            .arg(&channels)
            .arg(&samples)
            .arg(scale)
            .arg(shift)
            .arg(x)
            .arg(y)
            .arg(&mut scratch.fault);
        // SAFETY: the arguments follow gather_batch(images, labels, order, start, rows,
        // features, plane, channels, samples, scale, shift, x, y, fault) in type and
        // order. Checked by `crate::shape` before the call: order holds start + rows indices, x rows ×
        // features floats, y rows labels, scale and shift `channels` floats, images
        // samples × features bytes; the kernel reads images only at indices below
        // `samples` (checked on the device) and scale/shift below `channels`.
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching gather_batch"))?;
        Ok(())
    }

    /// See [`crate::Backend::bias_act`].
    pub(super) fn bias_act_impl(
        &self,
        x: &mut CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        act: Activation,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let n = count2("bias_act", rows, cols)?;
        if n == 0 || (bias.is_none() && act == Activation::Identity) {
            return Ok(());
        }
        let (code, slope) = (activation_code(act), slope());
        match bias {
            Some(bias) => {
                let (rows, cols) = (rows as u32, cols as u32);
                let mut launch = self.stream.launch_builder(&self.kernels().bias_act);
                launch
                    .arg(x)
                    .arg(bias)
                    .arg(&rows)
                    .arg(&cols)
                    .arg(&code)
                    .arg(&slope);
                // SAFETY: bias_act(x, bias, rows, cols, act, slope) in type and order;
                // x holds rows × cols floats and bias cols (`crate::shape`, checked before the call).
                unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching bias_act"))?;
            }
            None => {
                let mut launch = self.stream.launch_builder(&self.kernels().act_only);
                launch.arg(x).arg(&n).arg(&code).arg(&slope);
                // SAFETY: act_only(x, len, act, slope) in type and order; x holds n
                // floats (`crate::shape`, checked before the call).
                unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching act_only"))?;
            }
        }
        Ok(())
    }

    /// See [`crate::Backend::act_backward`].
    pub(super) fn act_backward_impl(
        &self,
        y: &CudaSlice<f32>,
        grad: &mut CudaSlice<f32>,
        act: Activation,
        len: usize,
    ) -> Result<()> {
        let n = count("act_backward", "len", len)?;
        if n == 0 || act == Activation::Identity {
            return Ok(());
        }
        let (code, slope) = (activation_code(act), slope());
        let mut launch = self.stream.launch_builder(&self.kernels().act_backward);
        launch.arg(y).arg(grad).arg(&n).arg(&code).arg(&slope);
        // SAFETY: act_backward(y, grad, len, act, slope) in type and order; y and grad
        // hold len floats (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching act_backward"))?;
        Ok(())
    }

    /// See [`crate::Backend::dropout_mask`].
    pub(super) fn dropout_mask_impl(
        &self,
        mask: &mut CudaSlice<f32>,
        len: usize,
        p: f32,
        key: u64,
    ) -> Result<()> {
        let n = count("dropout_mask", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        // Rounded on the host exactly as the CPU rounds it.
        let scale = (1.0 / (1.0 - p as f64)) as f32;
        let mut launch = self.stream.launch_builder(&self.kernels().dropout_mask);
        launch.arg(mask).arg(&n).arg(&key).arg(&p).arg(&scale);
        // SAFETY: dropout_mask(mask, len, key, p, scale) in type and order (key is
        // unsigned long long); mask holds len floats (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching dropout_mask"))?;
        Ok(())
    }

    /// See [`crate::Backend::mul`].
    pub(super) fn mul_impl(
        &self,
        x: &CudaSlice<f32>,
        m: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        let n = count("mul", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        let mut launch = self.stream.launch_builder(&self.kernels().mul);
        launch.arg(x).arg(m).arg(out).arg(&n);
        // SAFETY: mul(x, m, out, len) in type and order; all three hold len floats
        // (`crate::shape`, checked before the call) and `out` is borrowed mutably, so it aliases neither.
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching mul"))?;
        Ok(())
    }

    /// See [`crate::Backend::mul_assign`].
    pub(super) fn mul_assign_impl(
        &self,
        x: &mut CudaSlice<f32>,
        m: &CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        let n = count("mul_assign", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        let mut launch = self.stream.launch_builder(&self.kernels().mul_assign);
        launch.arg(x).arg(m).arg(&n);
        // SAFETY: mul_assign(x, m, len) in type and order; both hold len floats
        // (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching mul_assign"))?;
        Ok(())
    }

    /// See [`crate::Backend::penalty_grad`].
    pub(super) fn penalty_grad_impl(
        &self,
        w: &CudaSlice<f32>,
        g: &mut CudaSlice<f32>,
        len: usize,
        l1: f64,
        l2: f64,
    ) -> Result<()> {
        let n = count("penalty_grad", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        // Rounded as the CPU rounds them: l1 and 2·l2 (the product taken in f64).
        let (l1, two_l2) = (l1 as f32, (2.0 * l2) as f32);
        let mut launch = self.stream.launch_builder(&self.kernels().penalty_grad);
        launch.arg(w).arg(g).arg(&n).arg(&l1).arg(&two_l2);
        // SAFETY: penalty_grad(w, g, len, l1, two_l2) in type and order; w and g hold
        // len floats (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching penalty_grad"))?;
        Ok(())
    }

    /// See [`crate::Backend::fill`].
    pub(super) fn fill_impl(&self, buf: &mut CudaSlice<f32>, len: usize, value: f32) -> Result<()> {
        let n = count("fill", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        let mut launch = self.stream.launch_builder(&self.kernels().fill);
        launch.arg(buf).arg(&n).arg(&value);
        // SAFETY: fill(buf, len, value) in type and order; buf holds len floats
        // (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching fill"))?;
        Ok(())
    }
}
