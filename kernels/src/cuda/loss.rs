//! Launchers of `kernels/loss.cu`: softmax cross-entropy, fused forward and backward.

use super::CudaBackend;
use super::launch::{count, count2, driver, one_block};
use crate::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

impl CudaBackend {
    /// See [`crate::Backend::softmax_xent`]. A label out of range is found on the device
    /// and reported as [`crate::Error::Label`] at the next synchronising call.
    pub(super) fn softmax_xent_impl(
        &self,
        logits: &CudaSlice<f32>,
        labels: &CudaSlice<u32>,
        rows: usize,
        cols: usize,
        dlogits: Option<&mut CudaSlice<f32>>,
        acc: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let op = "softmax_xent";
        count2(op, rows, cols)?;
        let rows32 = count(op, "rows", rows)?;
        let cols32 = count(op, "cols", cols)?;
        if rows == 0 {
            return Ok(());
        }
        let mut scratch = self.scratch();
        match dlogits {
            None => {
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().softmax_xent_loss);
                launch
                    .arg(logits)
                    .arg(labels)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(acc)
                    .arg(&mut scratch.fault);
                // SAFETY: softmax_xent_loss(logits, labels, rows, cols, acc, fault) in
                // type and order; logits hold rows × cols floats, labels rows, acc 2
                // (`crate::shape`, checked before the call), fault 4 words; labels are range-checked on the
                // device before indexing; one block of BLOCK threads, as the kernel's
                // reduction assumes.
                unsafe { launch.launch(one_block()) }
                    .map_err(driver("launching softmax_xent_loss"))?;
            }
            Some(dlogits) => {
                // Rounded as the CPU rounds it.
                let inv_rows = (1.0 / rows as f64) as f32;
                let mut launch = self
                    .stream
                    .launch_builder(&self.kernels().softmax_xent_grad);
                launch
                    .arg(logits)
                    .arg(labels)
                    .arg(&rows32)
                    .arg(&cols32)
                    .arg(dlogits)
                    .arg(&inv_rows)
                    .arg(acc)
                    .arg(&mut scratch.fault);
                // SAFETY: softmax_xent_grad(logits, labels, rows, cols, dlogits,
                // inv_rows, acc, fault) in type and order; as above, and dlogits holds
                // rows × cols floats (`crate::shape`, checked before the call).
                unsafe { launch.launch(one_block()) }
                    .map_err(driver("launching softmax_xent_grad"))?;
            }
        }
        Ok(())
    }
}
