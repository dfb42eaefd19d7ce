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
