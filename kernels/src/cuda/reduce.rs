//! Launchers of `kernels/reduce.cu`: bias gradients, gradient statistics (kept on the
//! device) and the diagnostics' moments (returned to the host).

use super::CudaBackend;
use super::launch::{count, count2, driver, grid_columns, grid_partials, one_block};
use crate::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

impl CudaBackend {
    /// See [`crate::Backend::sum_rows`].
    pub(super) fn sum_rows_impl(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        count2("sum_rows", rows, cols)?;
        let rows = count("sum_rows", "rows", rows)?;
        let cols = count("sum_rows", "cols", cols)?;
        if cols == 0 {
            return Ok(());
        }
        let mut launch = self.stream.launch_builder(&self.kernels().sum_rows);
        launch.arg(x).arg(&rows).arg(&cols).arg(out);
        // SAFETY: sum_rows(x, rows, cols, out) in type and order; x holds rows × cols
        // floats and out cols (`crate::shape`, checked before the call); one (COL_TILE × ROW_THREADS) block
        // per COL_TILE columns, as the kernel's reduction assumes.
        unsafe { launch.launch(grid_columns(cols)) }.map_err(driver("launching sum_rows"))?;
        Ok(())
    }

    /// Launches `moments_partial` over the first `n` elements of `x` into the scratch
    /// partials; returns the number of blocks (partials per statistic).
    fn moments_partials(
        &self,
        x: &CudaSlice<f32>,
        n: u32,
        partials: &mut CudaSlice<f64>,
    ) -> Result<u32> {
        let cfg = grid_partials(n);
        let mut launch = self.stream.launch_builder(&self.kernels().moments_partial);
        launch.arg(x).arg(&n).arg(partials);
        // SAFETY: moments_partial(x, len, partials) in type and order; x holds n floats
        // (`crate::shape`, checked before the call); the grid has at most PARTIAL_BLOCKS blocks of BLOCK
        // threads and partials holds 4 × PARTIAL_BLOCKS doubles, of which the kernel
        // writes 4 × gridDim.x.
        unsafe { launch.launch(cfg) }.map_err(driver("launching moments_partial"))?;
        Ok(cfg.grid_dim.0)
    }

    /// See [`crate::Backend::grad_stats`]: two launches, nothing read back.
    pub(super) fn grad_stats_impl(
        &self,
        g: &CudaSlice<f32>,
        len: usize,
        acc: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = count("grad_stats", "len", len)?;
        let mut scratch = self.scratch();
        let blocks = self.moments_partials(g, n, &mut scratch.partials)?;
        let mut launch = self
            .stream
            .launch_builder(&self.kernels().grad_stats_finish);
        launch.arg(&scratch.partials).arg(&blocks).arg(acc);
        // SAFETY: grad_stats_finish(partials, blocks, acc) in type and order; partials
        // holds the 4 × blocks doubles just written on this stream, acc 2 floats
        // (`crate::shape`, checked before the call); one block of BLOCK threads, as its reduction assumes.
        unsafe { launch.launch(one_block()) }.map_err(driver("launching grad_stats_finish"))?;
        Ok(())
    }

    /// See [`crate::Backend::moments`]: block partials on the device, summed in f64 on
    /// the host.
    pub(super) fn moments_impl(&self, x: &CudaSlice<f32>, len: usize) -> Result<[f64; 4]> {
        let n = count("moments", "len", len)?;
        if n == 0 {
            return Ok([0.0; 4]);
        }
        let mut scratch = self.scratch();
        let blocks = self.moments_partials(x, n, &mut scratch.partials)? as usize;
        let partials = self.read_back(&scratch.partials, 4 * blocks, "moments")?;
        drop(scratch);
        self.check_faults()?;
        let part = |k: usize| &partials[k * blocks..(k + 1) * blocks];
        Ok([
            part(0).iter().sum(),
            part(1).iter().sum(),
            part(2).iter().sum(),
            part(3).iter().fold(0.0f64, |a, &b| a.max(b)),
        ])
    }

    /// See [`crate::Backend::sq_dist`].
    pub(super) fn sq_dist_impl(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        len: usize,
    ) -> Result<f64> {
        let n = count("sq_dist", "len", len)?;
        if n == 0 {
            return Ok(0.0);
        }
        let mut scratch = self.scratch();
        let cfg = grid_partials(n);
        let mut launch = self.stream.launch_builder(&self.kernels().sq_dist_partial);
        launch.arg(a).arg(b).arg(&n).arg(&mut scratch.partials);
        // SAFETY: sq_dist_partial(a, b, len, partials) in type and order; a and b hold
        // n floats (`crate::shape`, checked before the call); at most PARTIAL_BLOCKS blocks, each writing
        // one of the 4 × PARTIAL_BLOCKS partials.
        unsafe { launch.launch(cfg) }.map_err(driver("launching sq_dist_partial"))?;
        let partials = self.read_back(&scratch.partials, cfg.grid_dim.0 as usize, "sq_dist")?;
        drop(scratch);
        self.check_faults()?;
        Ok(partials.iter().sum())
    }

    /// See [`crate::Backend::dead_columns`].
    pub(super) fn dead_columns_impl(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<usize> {
        count2("dead_columns", rows, cols)?;
        let rows = count("dead_columns", "rows", rows)?;
        let cols = count("dead_columns", "cols", cols)?;
        if cols == 0 {
            return Ok(0);
        }
        let mut scratch = self.scratch();
        self.stream
            .memset_zeros(&mut scratch.dead)
            .map_err(driver("zeroing the dead-column count"))?;
        let mut launch = self.stream.launch_builder(&self.kernels().dead_columns);
        launch.arg(x).arg(&rows).arg(&cols).arg(&mut scratch.dead);
        // SAFETY: dead_columns(x, rows, cols, dead) in type and order; x holds rows ×
        // cols floats (`crate::shape`, checked before the call) and dead one word, zeroed just before on
        // this stream; one (COL_TILE × ROW_THREADS) block per COL_TILE columns.
        unsafe { launch.launch(grid_columns(cols)) }.map_err(driver("launching dead_columns"))?;
        let dead = self.read_back(&scratch.dead, 1, "dead_columns")?;
        drop(scratch);
        self.check_faults()?;
        Ok(dead[0] as usize)
    }
}
