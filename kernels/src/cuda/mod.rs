//! The CUDA backend: our own kernels, compiled at run time with NVRTC, and cuBLAS for
//! matrix multiply, through `cudarc`.
//!
//! # Layout
//!
//! - `mod.rs` (this file): the run-time probe ([`available`]) and [`CudaBackend`] (a
//!   device's context and kernels, shared per process; its own stream, cuBLAS handle
//!   and a little scratch memory).
//! - `backend.rs`: `impl Backend for CudaBackend`, which checks every buffer against
//!   the shape and calls a launcher.
//! - `compile.rs`: NVRTC. Each `kernels/*.cu` file is compiled once per process and
//!   architecture to a CUBIN behind a generated prelude of shared constants;
//!   [`compile_all`] does only that, so it runs without a GPU.
//! - `table.rs`: the one list of kernels (file → kernel names), from which both the
//!   compile step's sources and the loaded-function table are generated, and the
//!   constants kernels and launchers share.
//! - `launch.rs`: launch shapes, element-count limits, loading the [`cudarc`] functions.
//! - `packed.rs`: `impl PackedBackend for CudaBackend`: the packed ops, with the
//!   per-trial parameter tables staged on the stream and `blockIdx.y` as the trial;
//!   cuBLAS's strided batched GEMM for the products.
//! - one launcher file per op family, as in `cpu/`: `elementwise.rs`, `norm.rs`,
//!   `loss.rs`, `optim.rs`, `reduce.rs`; and `matmul.rs`, whose `column_major` is the
//!   one place where our row-major product becomes cuBLAS's column-major one.
//! - `kernels/`: the CUDA C sources — `common.cuh` (fault reporting, block reductions),
//!   `elementwise.cu`, `norm.cu`, `loss.cu`, `optim.cu`, `reduce.cu` — each kernel
//!   written to mirror its CPU twin operation for operation.
//!
//! # Run-time decisions
//!
//! The build needs no CUDA toolkit: `libcuda`, `libnvrtc` and `libcublas` are opened
//! when first needed. Whether they can be is asked first ([`available`],
//! [`CudaBackend::new`]), because `cudarc` panics on a missing library; on a machine
//! without them the answer is an [`Error::Unavailable`], never a panic.
//!
//! # Numbers
//!
//! The kernels compute the CPU backend's functions in `f32`, compiled without FMA
//! contraction and with IEEE division and square root, so the elementwise ops and the
//! optimiser steps give the CPU's bits; dropout masks are the same bits by
//! construction (the same counter-based hash, in 64-bit integers). Transcendentals
//! (`expf`, `tanhf`, `logf`) and reductions (sums in a different order, batch-norm
//! statistics in `f32` by two passes where the CPU uses `f64`) differ in the last bits;
//! the parity tests (`kernels/tests/parity.rs`) bound the difference.
//!
//! # Asynchrony and errors
//!
//! Every op is queued on the backend's stream and returns at once; only the ops that
//! return host values (`download`, `moments`, `sq_dist`, `dead_columns`) and
//! [`CudaBackend::synchronize`] wait. Bad input that only the device can see (a sample
//! index or a label out of range) is recorded in a fault word by the kernel that met
//! it and reported, as the error the CPU would have given, by the next call that
//! waits. Buffers belong to the backend that made them: using one on another backend
//! is a race.

mod backend;
mod compile;
mod elementwise;
mod launch;
mod loss;
mod matmul;
mod norm;
mod optim;
mod packed;
mod reduce;
mod table;

pub use compile::{CompiledKernel, compile_all, nvrtc_version};
pub use packed::{MAX_GROUP, SCRATCH_BYTES_PER_TRIAL};

use crate::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use launch::{Kernels, driver};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use table::PARTIAL_BLOCKS;

/// Fails with [`Error::Unavailable`] unless the CUDA driver library can be loaded.
fn require_driver() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to dlopen each candidate name of libcuda
    // and closes it again; no driver function is called.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Unavailable(
            "no CUDA driver (libcuda.so) on this machine".into(),
        ))
    }
}

/// Fails with [`Error::Unavailable`] unless cuBLAS can be loaded.
fn require_cublas() -> Result<()> {
    // SAFETY: as in `require_driver`, for libcublas.
    if unsafe { cudarc::cublas::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Unavailable(
            "no cuBLAS (libcublas.so.13) on the library path; install a CUDA 13 toolkit or \
             the nvidia-cublas wheel and add its lib folder to LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// The number of CUDA devices this process can use, or why it can use none: no driver
/// library, a driver that fails to start, or no device. Never panics; calls nothing
/// in the driver before it knows the driver can be loaded.
pub fn available() -> Result<usize> {
    require_driver()?;
    let count = CudaContext::device_count()
        .map_err(|e| Error::Unavailable(format!("the CUDA driver found no usable device ({e})")))?;
    if count <= 0 {
        return Err(Error::Unavailable("the CUDA driver sees no device".into()));
    }
    Ok(count as usize)
}

/// A fault a kernel found in its input, as its code in the fault word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Fault {
    /// `gather_batch`: a sample index past the data set (index, samples).
    SampleIndex = 1,
    /// `softmax_xent`: a label not below the class count (label, row, classes).
    Label = 2,
}

impl Fault {
    /// The error the CPU backend gives for the same input, from the fault word.
    fn error(word: &[u32]) -> Option<Error> {
        let [code, a, b, c] = *word else {
            return Some(Error::Device(format!("malformed fault word {word:?}")));
        };
        match code {
            0 => None,
            c0 if c0 == Fault::SampleIndex as u32 => Some(Error::Device(format!(
                "gather_batch: sample index {a} is out of range for {b} samples"
            ))),
            c0 if c0 == Fault::Label as u32 => Some(Error::Label {
                label: a,
                row: b as usize,
                classes: c as usize,
            }),
            other => Some(Error::Device(format!("unknown kernel fault code {other}"))),
        }
    }
}

/// What every backend on one device shares, made once per process: the (primary)
/// context and the loaded kernels.
struct Device {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    kernels: Kernels,
    name: String,
    arch: String,
}

/// The devices opened so far in this process.
static DEVICES: Mutex<Vec<Arc<Device>>> = Mutex::new(Vec::new());

impl Device {
    /// Device `ordinal`, opened, its kernels compiled and loaded on first use.
    fn get(ordinal: usize) -> Result<Arc<Device>> {
        let mut devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = devices.iter().find(|d| d.ordinal == ordinal) {
            return Ok(d.clone());
        }
        let ctx = CudaContext::new(ordinal).map_err(driver(format!("opening device {ordinal}")))?;
        // SAFETY: called before this context allocates anything. Every backend uses one
        // stream of its own, and every buffer is made, used and freed on the stream of
        // the backend that made it, so the per-buffer events that cudarc would record to
        // order several streams are never needed (and would cost two driver calls per
        // kernel argument).
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("reading the compute capability"))?;
        let arch = format!("sm_{major}{minor}");
        let name = ctx.name().map_err(driver("reading the device name"))?;
        let kernels = Kernels::load(&ctx, &compile::compiled(&arch)?)?;
        let device = Arc::new(Device {
            ordinal,
            ctx,
            kernels,
            name,
            arch,
        });
        devices.push(device.clone());
        Ok(device)
    }
}

/// Device memory the launchers borrow for a moment.
struct Scratch {
    /// The fault word: code and three details (see `raise_fault` in `common.cuh`).
    fault: CudaSlice<u32>,
    /// Block partials of the whole-buffer reductions (4 × `PARTIAL_BLOCKS`).
    partials: CudaSlice<f64>,
    /// The dead-column count.
    dead: CudaSlice<u32>,
}

/// The CUDA backend, in `f32`, on one device.
pub struct CudaBackend {
    device: Arc<Device>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    scratch: Mutex<Scratch>,
    /// The packed ops' per-trial tables, once `reserve_group` made them.
    packed: Mutex<Option<packed::PackedScratch>>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.device.ordinal)
            .field("device", &self.device.name)
            .field("arch", &self.device.arch)
            .finish()
    }
}

impl CudaBackend {
    /// A backend on device `ordinal`, with its own stream and cuBLAS handle. The first
    /// backend of a device in a process compiles (NVRTC) and loads the kernels. Fails
    /// with [`Error::Unavailable`] when the driver, NVRTC, cuBLAS or the device is
    /// missing.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = available()?;
        if ordinal >= count {
            return Err(Error::Unavailable(format!(
                "there is no CUDA device {ordinal}: the driver sees {count}"
            )));
        }
        compile::require_nvrtc()?;
        require_cublas()?;
        let device = Device::get(ordinal)?;
        let stream = device
            .ctx
            .new_stream()
            .map_err(driver("creating a stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Cuda {
            call: "cublasCreate".into(),
            message: format!("{:?}", e.0),
        })?;
        let zeros = |what: &str, len: usize| {
            stream
                .alloc_zeros::<u32>(len)
                .map_err(driver(format!("allocating the {what}")))
        };
        let scratch = Scratch {
            fault: zeros("fault word", 4)?,
            partials: stream
                .alloc_zeros::<f64>(4 * PARTIAL_BLOCKS as usize)
                .map_err(driver("allocating the reduction partials"))?,
            dead: zeros("dead-column count", 1)?,
        };
        Ok(CudaBackend {
            device,
            stream,
            blas,
            scratch: Mutex::new(scratch),
            packed: Mutex::new(None),
        })
    }

    /// The device's free and total memory, in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.device
            .ctx
            .mem_get_info()
            .map_err(driver("cuMemGetInfo"))
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.device.ordinal
    }

    /// The architecture the kernels were compiled for, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.device.arch
    }

    /// Waits for every queued op, then reports the first device error or input fault
    /// since the last wait.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver("waiting for the stream"))?;
        self.check_faults()
    }

    fn kernels(&self) -> &Kernels {
        &self.device.kernels
    }

    fn scratch(&self) -> MutexGuard<'_, Scratch> {
        self.scratch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first `len` elements of `buf`, on the host, after everything queued before.
    fn read_back<T: DeviceRepr + Default + Clone>(
        &self,
        buf: &CudaSlice<T>,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let host = self
            .stream
            .clone_dtoh(&buf.slice(0..len))
            .map_err(driver(format!("{what}: copying to the host")))?;
        self.stream
            .synchronize()
            .map_err(driver(format!("{what}: waiting for the stream")))?;
        Ok(host)
    }

    /// Reads and clears the fault word; the error for the fault it held, if any.
    fn check_faults(&self) -> Result<()> {
        let mut scratch = self.scratch();
        let word = self.read_back(&scratch.fault, 4, "reading the fault word")?;
        match Fault::error(&word) {
            None => Ok(()),
            Some(err) => {
                self.stream
                    .memset_zeros(&mut scratch.fault)
                    .map_err(driver("clearing the fault word"))?;
                Err(err)
            }
        }
    }

    /// A device buffer of `len` zeros (`len` may be 0).
    fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        if len == 0 {
            return self.empty();
        }
        self.stream
            .alloc_zeros(len)
            .map_err(driver(format!("allocating {len} elements")))
    }

    /// An empty buffer. Some devices refuse zero-byte allocations, so this allocates one
    /// element and hands out a slice that claims none.
    fn empty<T: DeviceRepr + ValidAsZeroBits>(&self) -> Result<CudaSlice<T>> {
        let one = self
            .stream
            .alloc_zeros::<T>(1)
            .map_err(driver("allocating an empty buffer"))?;
        let ptr = one.leak();
        // SAFETY: `ptr` is the live one-element allocation made on this stream just
        // above, which `leak` left without an owner; the new slice owns it (frees it on
        // drop) and claims 0 elements, fewer than were allocated. Event tracking is off
        // for this context, so no event is created.
        Ok(unsafe { self.stream.upgrade_device_ptr(ptr, 0) })
    }

    /// A device buffer holding `host` (`host` may be empty).
    fn alloc_from<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return self.empty();
        }
        self.stream
            .clone_htod(host)
            .map_err(driver(format!("uploading {} elements", host.len())))
    }

    /// Overwrites the start of `dst` with `host`.
    fn write_start<T: DeviceRepr>(
        &self,
        op: &'static str,
        dst: &mut CudaSlice<T>,
        host: &[T],
    ) -> Result<()> {
        crate::shape::write(op, dst.len(), host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_htod(host, &mut dst.slice_mut(0..host.len()))
            .map_err(driver(format!("{op}: uploading {} elements", host.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_the_probe_says_so_instead_of_panicking() {
        if require_driver().is_ok() {
            println!("skipped: this machine has a CUDA driver");
            return;
        }
        let expected = "CUDA is not usable here: no CUDA driver (libcuda.so) on this machine";
        assert_eq!(available().unwrap_err().to_string(), expected);
        assert_eq!(CudaBackend::new(0).unwrap_err().to_string(), expected);
    }

    #[test]
    fn faults_become_the_cpu_errors() {
        assert!(Fault::error(&[0, 0, 0, 0]).is_none());
        let e = Fault::error(&[Fault::Label as u32, 12, 3, 10]).unwrap();
        assert!(
            matches!(
                e,
                Error::Label {
                    label: 12,
                    row: 3,
                    classes: 10
                }
            ),
            "{e}"
        );
        let e = Fault::error(&[Fault::SampleIndex as u32, 9, 5, 0]).unwrap();
        assert_eq!(
            e.to_string(),
            "gather_batch: sample index 9 is out of range for 5 samples"
        );
    }
}
