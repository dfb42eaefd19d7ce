//! Run-time compilation of the kernel sources with NVRTC, once per process and
//! architecture.
//!
//! Each `kernels/*.cu` file is compiled as its own program, behind a prelude: the
//! constants that the launchers and the kernels must agree on (block shapes, fault
//! codes, activation codes), written from the Rust definitions so that they cannot
//! drift apart, then `common.cuh`. The result for a real architecture (`sm_90`) is a
//! CUBIN, which the driver loads without JIT: a PTX file from an NVRTC newer than the
//! driver (NVRTC 13.5 on a 13.0 driver) would be refused, a CUBIN is not.

use super::table::{SOURCES, Source, prelude_defines};
use crate::{Error, Result};
use cudarc::nvrtc::{result as nvrtc, sys};
use std::ffi::{CString, c_char};
use std::sync::{Arc, Mutex};

const COMMON: &str = include_str!("kernels/common.cuh");

/// The options every program is compiled with. `--fmad=false` keeps `a*b + c` two
/// roundings, as on the CPU (the elementwise kernels are memory-bound: fusing would
/// buy no time and cost bit-parity); the others are NVRTC's defaults, spelt out because
/// parity depends on them (IEEE division and square root, no flush to zero).
const OPTIONS: [&str; 4] = [
    "--fmad=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--ftz=false",
];

/// One compiled kernel source.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    /// The source file, e.g. `norm.cu`.
    pub name: &'static str,
    /// The PTX NVRTC produced, without its trailing NUL.
    pub ptx: String,
    /// The CUBIN for the architecture, which is what the backend loads.
    pub cubin: Vec<u8>,
    /// NVRTC's log of the successful compile: its warnings, empty when there were none.
    pub log: String,
}

/// The text NVRTC compiles for `source`: the shared constants, `common.cuh`, then the
/// file itself, with a `#line` so that the log names the file's own lines.
fn program_text(source: &Source) -> String {
    let mut text = String::from("// Written by kernels/src/cuda/compile.rs.\n");
    for (name, value) in prelude_defines() {
        text.push_str(&format!("#define {name} {value}\n"));
    }
    text.push_str("#line 1 \"common.cuh\"\n");
    text.push_str(COMMON);
    text.push_str(&format!("\n#line 1 \"{}\"\n", source.name));
    text.push_str(source.code);
    text
}

/// Fails with [`Error::Unavailable`] unless NVRTC can be loaded.
pub(crate) fn require_nvrtc() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to dlopen each candidate name of libnvrtc
    // and closes it again; loading it runs no code of ours.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::Unavailable(
            "no NVRTC (libnvrtc.so.13) on the library path; install a CUDA 13 toolkit or \
             the nvidia-cuda-nvrtc wheel (scripts/install-nvrtc.sh) and add its lib folder \
             to LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// NVRTC's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loadable (checked above); both pointers are to live locals.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| nvrtc_error("nvrtcVersion", e))?;
    Ok((major, minor))
}

fn nvrtc_error(call: &str, e: nvrtc::NvrtcError) -> Error {
    Error::Cuda {
        call: call.into(),
        message: format!("{:?}", e.0),
    }
}

fn c_chars_to_string(chars: Vec<c_char>) -> String {
    let bytes: Vec<u8> = chars
        .into_iter()
        .map(|c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `create_program` and is destroyed only
        // here. A failure to free it leaks a little host memory and is not reported.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

/// Compiles one source for `arch` (`sm_XY`).
fn compile_source(source: &Source, arch: &str) -> Result<CompiledKernel> {
    let compile_error = |log: String| Error::Compile {
        kernel: source.name,
        arch: arch.to_string(),
        log,
    };
    if !arch.starts_with("sm_") {
        return Err(compile_error(format!(
            "the architecture must be a real one such as sm_90, not {arch:?}"
        )));
    }
    let text = CString::new(program_text(source))
        .map_err(|_| compile_error("the source holds a NUL byte".into()))?;
    let name = CString::new(source.name).map_err(|_| compile_error("bad file name".into()))?;
    let program = Program(
        nvrtc::create_program(&text, Some(&name))
            .map_err(|e| nvrtc_error("nvrtcCreateProgram", e))?,
    );
    let mut options: Vec<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    // SAFETY: `program.0` is a live program (destroyed only when `program` drops), and
    // `text` and `name`, which it may point into, outlive it.
    let compiled = unsafe { nvrtc::compile_program(program.0, &options) };
    // SAFETY: as above.
    let log = unsafe { nvrtc::get_program_log(program.0) }
        .map(c_chars_to_string)
        .unwrap_or_else(|e| format!("(no log: {:?})", e.0));
    if let Err(e) = compiled {
        return Err(compile_error(format!("{:?}\n{log}", e.0)));
    }
    // SAFETY: as above; the program compiled.
    let ptx = c_chars_to_string(
        unsafe { nvrtc::get_ptx(program.0) }.map_err(|e| nvrtc_error("nvrtcGetPTX", e))?,
    );
    let mut size = 0usize;
    // SAFETY: as above; `size` is a live local.
    unsafe { sys::nvrtcGetCUBINSize(program.0, &mut size) }
        .result()
        .map_err(|e| nvrtc_error("nvrtcGetCUBINSize", e))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: as above; `cubin` holds the `size` bytes NVRTC said it would write.
    unsafe { sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| nvrtc_error("nvrtcGetCUBIN", e))?;
    for kernel in source.kernels {
        if !ptx.contains(&format!(".entry {kernel}(")) {
            return Err(compile_error(format!(
                "the PTX defines no kernel named {kernel}"
            )));
        }
    }
    Ok(CompiledKernel {
        name: source.name,
        ptx,
        cubin,
        log: log.trim().to_string(),
    })
}

/// The compiled kernels of each architecture compiled so far in this process.
static COMPILED: Mutex<Vec<(String, Arc<[CompiledKernel]>)>> = Mutex::new(Vec::new());

/// Every kernel source compiled for `arch`, compiled on the first call for that arch
/// and remembered for the rest of the process.
pub(crate) fn compiled(arch: &str) -> Result<Arc<[CompiledKernel]>> {
    require_nvrtc()?;
    // Held while compiling, so that threads asking at once compile once.
    let mut cache = COMPILED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, kernels)) = cache.iter().find(|(a, _)| a == arch) {
        return Ok(kernels.clone());
    }
    let kernels: Arc<[CompiledKernel]> = SOURCES
        .iter()
        .map(|source| compile_source(source, arch))
        .collect::<Result<Vec<_>>>()?
        .into();
    cache.push((arch.to_string(), kernels.clone()));
    Ok(kernels)
}

/// Compiles every kernel source for `arch` (e.g. `sm_90`) with NVRTC alone — no driver
/// or GPU needed — and checks that each defines the kernels the backend loads. Returns
/// what was compiled: each file's PTX, CUBIN and NVRTC's warnings.
pub fn compile_all(arch: &str) -> Result<Arc<[CompiledKernel]>> {
    compiled(arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_defines_every_shared_constant() {
        let text = program_text(&SOURCES[0]);
        for name in [
            "BLOCK",
            "COL_TILE",
            "ROW_THREADS",
            "PARTIAL_BLOCKS",
            "FAULT_LABEL",
            "ACT_LEAKY_RELU",
            "ACT_IDENTITY",
        ] {
            assert!(text.contains(&format!("#define {name} ")), "{name}");
        }
        // common.cuh must not define them again.
        assert!(!COMMON.contains("#define BLOCK"));
    }

    #[test]
    fn a_compile_error_keeps_the_nvrtc_log() {
        if require_nvrtc().is_err() {
            println!("skipped: NVRTC not found");
            return;
        }
        let broken = Source {
            name: "broken.cu",
            code: "extern \"C\" __global__ void f(float *x) { x[0] = no_such_thing; }\n",
            kernels: &["f"],
        };
        match compile_source(&broken, "sm_90") {
            Err(Error::Compile { kernel, log, .. }) => {
                assert_eq!(kernel, "broken.cu");
                assert!(log.contains("no_such_thing"), "{log}");
                assert!(
                    log.contains("broken.cu(1)"),
                    "the log names the file's line: {log}"
                );
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
    }
}
