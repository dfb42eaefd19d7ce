//! Launchers of `kernels/optim.cu`: SGD and Adam updates.

use super::CudaBackend;
use super::launch::{count, driver, grid_1d};
use crate::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

impl CudaBackend {
    /// See [`crate::Backend::sgd_step`].
    pub(super) fn sgd_step_impl(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        velocity: &mut CudaSlice<f32>,
        len: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<()> {
        let n = count("sgd_step", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        let (lr, mu, wd) = (lr as f32, momentum as f32, weight_decay as f32);
        let mut launch = self.stream.launch_builder(&self.kernels().sgd_step);
        launch
            .arg(w)
            .arg(g)
            .arg(velocity)
            .arg(&n)
            .arg(&lr)
            .arg(&mu)
            .arg(&wd);
        // SAFETY: sgd_step(w, g, v, len, lr, mu, wd) in type and order; w, g and
        // velocity hold len floats (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching sgd_step"))?;
        Ok(())
    }

    /// See [`crate::Backend::adam_step`]. The bias corrections are folded into two
    /// factors in f64 on the host, as the CPU does.
    pub(super) fn adam_step_impl(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        len: usize,
        lr: f64,
        (beta1, beta2): (f64, f64),
        eps: f64,
        weight_decay: f64,
        step: u32,
    ) -> Result<()> {
        let n = count("adam_step", "len", len)?;
        if n == 0 {
            return Ok(());
        }
        let bc1 = 1.0 - beta1.powi(step as i32);
        let bc2 = 1.0 - beta2.powi(step as i32);
        let step_size = (lr / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let (b1, b2, eps, wd) = (beta1 as f32, beta2 as f32, eps as f32, weight_decay as f32);
        let mut launch = self.stream.launch_builder(&self.kernels().adam_step);
        launch
            .arg(w)
            .arg(g)
            .arg(m)
            .arg(v)
            .arg(&n)
            .arg(&step_size)
            .arg(&inv_sqrt_bc2)
            .arg(&b1)
            .arg(&b2)
            .arg(&eps)
            .arg(&wd);
        // SAFETY: adam_step(w, g, m, v, len, step_size, inv_sqrt_bc2, b1, b2, eps, wd)
        // in type and order; w, g, m and v hold len floats (`crate::shape`, checked before the call).
        unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching adam_step"))?;
        Ok(())
    }
}
