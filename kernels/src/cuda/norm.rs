//! Launchers of `kernels/norm.cu`: batch normalisation forward (training, frozen,
//! evaluation) and backward.

use super::CudaBackend;
use super::launch::{count, count2, driver, grid_1d, grid_columns};
use crate::{BatchNormBuffers, BatchNormMode, Result};
use cudarc::driver::{CudaSlice, PushKernelArg};

impl CudaBackend {
    /// See [`crate::Backend::batchnorm_forward`].
    pub(super) fn batchnorm_forward_impl(
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
        let n = count2(op, rows, cols)?;
        let rows32 = count(op, "rows", rows)?;
        let cols32 = count(op, "cols", cols)?;
        if cols == 0 {
            return Ok(());
        }
        match mode {
            BatchNormMode::Eval => {
                if n == 0 {
                    return Ok(());
                }
                let eps = eps as f32;
                let mut launch = self.stream.launch_builder(&self.kernels().batchnorm_eval);
                launch
                    .arg(x)
                    .arg(y)
                    .arg(bn.gamma)
                    .arg(bn.beta)
                    .arg(&*bn.running_mean)
                    .arg(&*bn.running_var)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(&eps);
                // SAFETY: batchnorm_eval(x, y, gamma, beta, running_mean, running_var,
                // rows, cols, eps) in type and order; x and y hold rows × cols floats,
                // the four per-feature buffers cols (`crate::shape`, checked before the call).
                unsafe { launch.launch(grid_1d(n)) }.map_err(driver("launching batchnorm_eval"))?;
            }
            BatchNormMode::Train { .. } | BatchNormMode::TrainFrozen => {
                let (update, momentum): (i32, f64) = match mode {
                    BatchNormMode::Train { momentum } => (1, momentum),
                    _ => (0, 0.0),
                };
                let mut launch = self.stream.launch_builder(&self.kernels().batchnorm_train);
                launch
                    .arg(x)
                    .arg(y)
                    .arg(bn.gamma)
                    .arg(bn.beta)
                    .arg(bn.running_mean)
                    .arg(bn.running_var)
                    .arg(bn.xhat)
                    .arg(bn.invstd)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(&eps)
                    .arg(&update)
                    .arg(&momentum);
                // SAFETY: batchnorm_train(x, y, gamma, beta, running_mean, running_var,
                // xhat, invstd, rows, cols, eps, update_running, momentum) in type and
                // order (eps and momentum are doubles); x, y and xhat hold rows × cols
                // floats, the five per-feature buffers cols (`crate::shape`, checked before the call); the
                // grid has one (COL_TILE × ROW_THREADS) block per COL_TILE columns, the
                // shape the kernel's shared-memory reduction assumes.
                unsafe { launch.launch(grid_columns(cols32)) }
                    .map_err(driver("launching batchnorm_train"))?;
            }
        }
        Ok(())
    }

    /// See [`crate::Backend::batchnorm_backward`].
    pub(super) fn batchnorm_backward_impl(
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
        count2(op, rows, cols)?;
        let rows = count(op, "rows", rows)?;
        let cols = count(op, "cols", cols)?;
        if cols == 0 {
            return Ok(());
        }
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().batchnorm_backward);
        launch
            .arg(dy)
            .arg(xhat)
            .arg(gamma)
            .arg(invstd)
            .arg(dx)
            .arg(dgamma)
            .arg(dbeta)
            .arg(&rows)
            .arg(&cols);
        // SAFETY: batchnorm_backward(dy, xhat, gamma, invstd, dx, dgamma, dbeta, rows,
        // cols) in type and order; dy, xhat and dx hold rows × cols floats, the four
        // per-feature buffers cols (`crate::shape`, checked before the call); one (COL_TILE × ROW_THREADS)
        // block per COL_TILE columns, as the kernel's reduction assumes.
        unsafe { launch.launch(grid_columns(cols)) }
            .map_err(driver("launching batchnorm_backward"))?;
        Ok(())
    }
}
