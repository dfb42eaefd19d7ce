//! The kernels crate's error type.

/// What can go wrong in a kernel call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer is smaller than the shape an op was asked to work on.
    #[error("{op}: buffer `{buffer}` holds {len} elements, the shape needs {needed}")]
    Shape {
        /// The op that was called.
        op: &'static str,
        /// Which argument was too small.
        buffer: &'static str,
        /// Its length.
        len: usize,
        /// The length the shape needs.
        needed: usize,
    },
    /// A label is not a valid class index for the logits it is compared with.
    #[error("label {label} at row {row} is not below the number of classes {classes}")]
    Label {
        /// The offending label.
        label: u32,
        /// Its row in the batch.
        row: usize,
        /// The number of classes (logit columns).
        classes: usize,
    },
    /// A device error, with the device's own message.
    #[error("{0}")]
    Device(String),
    /// CUDA cannot be used on this machine (no driver, no device, or a missing CUDA
    /// library): the answer of the run-time probe, not a failure of a computation.
    #[error("CUDA is not usable here: {0}")]
    Unavailable(String),
    /// A call into the CUDA driver, NVRTC or cuBLAS failed.
    #[error("CUDA: {call} failed: {message}")]
    Cuda {
        /// What was being done, e.g. `launching softmax_xent_grad`.
        call: String,
        /// The library's own error name and description.
        message: String,
    },
    /// NVRTC could not compile a kernel source file.
    #[error("NVRTC could not compile {kernel} for {arch}: {log}")]
    Compile {
        /// The kernel source file, e.g. `norm.cu`.
        kernel: &'static str,
        /// The target architecture, e.g. `sm_90`.
        arch: String,
        /// NVRTC's error and its compile log, as NVRTC wrote them.
        log: String,
    },
}

/// Result with the kernels crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails with [`Error::Shape`] unless `len >= needed`.
pub fn check_len(op: &'static str, buffer: &'static str, len: usize, needed: usize) -> Result<()> {
    if len < needed {
        return Err(Error::Shape {
            op,
            buffer,
            len,
            needed,
        });
    }
    Ok(())
}
