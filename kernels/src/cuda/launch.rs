//! Launch shapes, loading the kernels, and the conversions every launcher needs.
//!
//! The shape constants live in `table.rs` and are also `#define`d into every kernel
//! source by `compile.rs`, so the kernels and their launchers agree by construction.

use super::compile::CompiledKernel;
pub(crate) use super::table::Kernels;
use super::table::{BLOCK, COL_TILE, PARTIAL_BLOCKS, ROW_THREADS, SOURCES};
use crate::{Error, Result};
use cudarc::driver::{CudaContext, DriverError, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

/// The most blocks of a one-dimensional kernel; its grid-stride loop does the rest.
const MAX_BLOCKS: u32 = 8192;
/// The largest element count a kernel accepts: with it, a grid-stride index never
/// overflows `unsigned int`.
pub(crate) const MAX_ELEMS: usize = i32::MAX as usize;

/// A grid of [`BLOCK`]-thread blocks covering `n` elements (at most [`MAX_BLOCKS`]).
pub(crate) fn grid_1d(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK).clamp(1, MAX_BLOCKS), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The grid of a whole-buffer reduction over `n` elements: one block per [`BLOCK`]
/// elements, at most [`PARTIAL_BLOCKS`].
pub(crate) fn grid_partials(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK).clamp(1, PARTIAL_BLOCKS), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of [`BLOCK`] threads.
pub(crate) fn one_block() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One (`COL_TILE` × `ROW_THREADS`) block per [`COL_TILE`] columns.
pub(crate) fn grid_columns(cols: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (cols.div_ceil(COL_TILE).max(1), 1, 1),
        block_dim: (COL_TILE, ROW_THREADS, 1),
        shared_mem_bytes: 0,
    }
}

/// `n` as a kernel's `unsigned int` count, refusing counts past [`MAX_ELEMS`].
pub(crate) fn count(op: &'static str, what: &str, n: usize) -> Result<u32> {
    if n > MAX_ELEMS {
        return Err(Error::Device(format!(
            "{op}: {what} = {n} is more than the CUDA kernels handle ({MAX_ELEMS})"
        )));
    }
    Ok(n as u32)
}

/// `rows * cols` as a kernel count, refusing products past [`MAX_ELEMS`].
pub(crate) fn count2(op: &'static str, rows: usize, cols: usize) -> Result<u32> {
    let n = rows.saturating_mul(cols);
    count(op, "rows × cols", n)
}

/// Wraps a driver error with what was being done.
pub(crate) fn driver(call: impl Into<String>) -> impl FnOnce(DriverError) -> Error {
    let call = call.into();
    move |e| Error::Cuda {
        call,
        message: e.to_string(),
    }
}

impl Kernels {
    /// Loads the compiled sources into `ctx` and looks every kernel of the table up by
    /// name.
    pub(crate) fn load(ctx: &Arc<CudaContext>, compiled: &[CompiledKernel]) -> Result<Self> {
        let mut modules = Vec::with_capacity(SOURCES.len());
        for (source, image) in SOURCES.iter().zip(compiled) {
            let module = ctx
                .load_module(Ptx::from_binary(image.cubin.clone()))
                .map_err(driver(format!("loading the module of {}", source.name)))?;
            modules.push((source.name, module));
        }
        Kernels::find_each(|file, name| {
            let (_, module) = modules
                .iter()
                .find(|(f, _)| *f == file)
                .ok_or_else(|| Error::Device(format!("{file} was not compiled")))?;
            module
                .load_function(name)
                .map_err(driver(format!("finding kernel {name} in {file}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_their_elements_within_the_limits() {
        assert_eq!(grid_1d(0).grid_dim.0, 1);
        assert_eq!(grid_1d(257).grid_dim.0, 2);
        assert_eq!(grid_1d(u32::MAX).grid_dim.0, MAX_BLOCKS);
        assert_eq!(grid_partials(10_000_000).grid_dim.0, PARTIAL_BLOCKS);
        assert_eq!(grid_columns(33).grid_dim.0, 2);
        assert_eq!(grid_columns(33).block_dim, (COL_TILE, ROW_THREADS, 1));
        // A grid-stride index stays below 2^32: MAX_ELEMS plus one full stride.
        let stride = (MAX_BLOCKS * BLOCK) as u64;
        assert!(MAX_ELEMS as u64 + stride < u32::MAX as u64);
    }

    #[test]
    fn counts_refuse_what_does_not_fit() {
        assert_eq!(count("op", "len", 5).unwrap(), 5);
        assert!(count("op", "len", MAX_ELEMS + 1).is_err());
        assert!(count2("op", usize::MAX, 2).is_err());
        assert_eq!(count2("op", 3, 4).unwrap(), 12);
    }
}
