//! The one list of CUDA kernels, and the constants kernels and launchers share.
//!
//! [`kernel_table!`] is invoked once, below: for each `.cu` file the `extern "C"`
//! kernels it defines. From that list come both [`SOURCES`] (what `compile.rs` hands
//! NVRTC and checks the PTX against) and [`Kernels`] (one loaded function per kernel,
//! a field named as the kernel, which the launchers use), so a kernel's name is written
//! once. This module depends on no other module of the backend: `compile.rs` and
//! `launch.rs` both read it, and neither reads the other's internals.

use super::Fault;
use crate::{Activation, Result};
use cudarc::driver::CudaFunction;

/// Threads per block of the one-dimensional and whole-buffer reduction kernels.
pub(crate) const BLOCK: u32 = 256;
/// Columns per block of the per-column kernels (`blockDim.x`: one warp, so each row's
/// reads are coalesced).
pub(crate) const COL_TILE: u32 = 32;
/// Threads that share the rows of one column in the per-column kernels (`blockDim.y`).
pub(crate) const ROW_THREADS: u32 = 16;
/// The most blocks of a whole-buffer reduction, hence its number of partials.
pub(crate) const PARTIAL_BLOCKS: u32 = 256;

/// The code of `act` in the kernels (`ACT_*`, defined from this function).
pub(crate) fn activation_code(act: Activation) -> i32 {
    match act {
        Activation::Identity => 0,
        Activation::Sigmoid => 1,
        Activation::Tanh => 2,
        Activation::Relu => 3,
        Activation::LeakyRelu => 4,
        Activation::Elu => 5,
    }
}

/// The `#define`s in front of every kernel source: launch shapes, fault codes and
/// activation codes, from the Rust definitions above, so the two cannot drift apart.
pub(crate) fn prelude_defines() -> Vec<(String, String)> {
    let mut defines: Vec<(String, String)> = [
        ("BLOCK", BLOCK),
        ("COL_TILE", COL_TILE),
        ("ROW_THREADS", ROW_THREADS),
        ("PARTIAL_BLOCKS", PARTIAL_BLOCKS),
        ("FAULT_SAMPLE_INDEX", Fault::SampleIndex as u32),
        ("FAULT_LABEL", Fault::Label as u32),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), format!("{value}u")))
    .collect();
    for act in [Activation::Identity].into_iter().chain(Activation::HIDDEN) {
        let name = act.name().to_uppercase();
        defines.push((format!("ACT_{name}"), activation_code(act).to_string()));
    }
    defines
}

/// One kernel source file and the kernels it defines.
pub(crate) struct Source {
    /// The file name, e.g. `norm.cu`.
    pub name: &'static str,
    /// Its text.
    pub code: &'static str,
    /// The `extern "C"` kernels it defines, which the backend loads by name.
    pub kernels: &'static [&'static str],
}

/// Defines [`SOURCES`] and [`Kernels`] from one list of `"file.cu": [kernel, …]`.
macro_rules! kernel_table {
    ($($file:literal: [$($kernel:ident),* $(,)?]),* $(,)?) => {
        /// Every kernel source, in the order the backend compiles and loads them.
        pub(crate) const SOURCES: &[Source] = &[$(Source {
            name: $file,
            code: include_str!(concat!("kernels/", $file)),
            kernels: &[$(stringify!($kernel)),*],
        }),*];

        /// Every kernel, loaded into one context; each field is the kernel of its name.
        pub(crate) struct Kernels {
            $($(pub(crate) $kernel: CudaFunction,)*)*
        }

        impl Kernels {
            /// Every kernel, each found by `find(file, kernel)`.
            pub(crate) fn find_each(
                mut find: impl FnMut(&'static str, &'static str) -> Result<CudaFunction>,
            ) -> Result<Self> {
                Ok(Kernels {
                    $($($kernel: find($file, stringify!($kernel))?,)*)*
                })
            }
        }
    };
}

kernel_table! {
    "elementwise.cu": [
        gather_batch,
        bias_act,
        act_only,
        act_backward,
        dropout_mask,
        mul,
        mul_assign,
        penalty_grad,
        fill,
        gather_batch_packed,
        bias_act_packed,
        act_only_packed,
        act_backward_packed,
        dropout_mask_packed,
        mul_packed,
        mul_assign_packed,
        copy_packed,
        penalty_grad_packed,
    ],
    "norm.cu": [
        batchnorm_train,
        batchnorm_eval,
        batchnorm_backward,
        batchnorm_train_packed,
        batchnorm_eval_packed,
        batchnorm_backward_packed,
    ],
    "loss.cu": [
        softmax_xent_loss,
        softmax_xent_grad,
        softmax_xent_loss_packed,
        softmax_xent_grad_packed,
    ],
    "optim.cu": [sgd_step, adam_step, sgd_step_packed, adam_step_packed],
    "reduce.cu": [
        sum_rows,
        moments_partial,
        grad_stats_finish,
        sq_dist_partial,
        dead_columns,
        sum_rows_packed,
        moments_partial_packed,
        grad_stats_finish_packed,
        sq_dist_partial_packed,
        dead_columns_packed,
    ],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_codes_are_distinct() {
        let all = [Activation::Identity]
            .into_iter()
            .chain(Activation::HIDDEN)
            .collect::<Vec<_>>();
        let mut codes: Vec<i32> = all.iter().map(|&a| activation_code(a)).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn every_listed_kernel_appears_in_its_source_once() {
        let mut names: Vec<&str> = Vec::new();
        for source in SOURCES {
            for kernel in source.kernels {
                let definition = format!("extern \"C\" __global__ void {kernel}(");
                assert_eq!(
                    source.code.matches(&definition).count(),
                    1,
                    "{} must define {kernel} once",
                    source.name
                );
                names.push(kernel);
            }
        }
        let total = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), total, "kernel names are unique");
    }

    #[test]
    fn every_kernel_a_source_defines_is_listed() {
        for source in SOURCES {
            for (at, _) in source.code.match_indices("__global__ void ") {
                let rest = &source.code[at + "__global__ void ".len()..];
                let name = &rest[..rest.find('(').unwrap()];
                assert!(
                    source.kernels.contains(&name),
                    "{} defines {name}, which the table does not list",
                    source.name
                );
            }
        }
    }
}
