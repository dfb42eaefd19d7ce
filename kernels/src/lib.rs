//! Tensors and ops for MLP training, behind one small [`Backend`] trait.
//!
//! # Layout
//!
//! - [`backend`]: the contract every device implements — buffers, matrix multiply,
//!   fused bias + activation, batch norm, dropout, softmax cross-entropy, optimiser
//!   updates and the reductions the diagnostics need.
//! - [`packed`]: [`PackedBackend`], the same ops over a group of trials trained in
//!   lockstep (a leading group dimension, per-trial parameters and masks).
//! - [`cpu`]: the CPU implementation, generic over [`Float`] (`f32` for training,
//!   `f64` for gradient checking); matrix multiply through the `gemm` crate.
//! - [`cuda`]: the CUDA implementation (`f32`): our own kernels (`cuda/kernels/*.cu`,
//!   compiled at run time with NVRTC) and cuBLAS, through `cudarc`. Always compiled;
//!   whether it can run is decided at run time by [`cuda::available`].
//! - [`shape`]: every op's buffer-length checks, called by every backend before it
//!   touches a buffer (the CUDA launchers' safety rests on them).
//! - [`gradcheck`]: the numerical gradient checker (central differences, PyTorch
//!   `gradcheck` tolerances).
//! - [`Activation`], [`dropout_keep`]: definitions shared by every backend, so that
//!   all of them compute the same function and draw the same dropout masks.
//!
//! This crate knows nothing of trials, datasets or the network: it is the arithmetic.

pub mod activation;
pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod float;
pub mod gradcheck;
pub mod packed;
pub mod rng;
pub mod shape;

pub use activation::Activation;
pub use backend::{Backend, BatchNormBuffers, BatchNormMode, Transpose};
pub use cpu::CpuBackend;
pub use cuda::CudaBackend;
pub use error::{Error, Result};
pub use float::Float;
pub use packed::{AdamHyper, PackedBackend, PackedBatchNorm, SgdHyper};
pub use rng::dropout_keep;
