//! Choosing the device a trial trains on: `auto`, `cpu`, `cuda` or `cuda:N`, decided at
//! run time by probing the CUDA driver — never by a compile-time flag, never a panic.

use gradsweep_kernels::cuda::{self, CudaBackend};
use gradsweep_kernels::{Backend, CpuBackend};

/// A device a trial can train on.
pub enum Device {
    /// The CPU, in f32.
    Cpu(CpuBackend<f32>),
    /// A CUDA GPU.
    Cuda(Box<CudaBackend>),
}

impl Device {
    /// The device's name as records show it.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu(b) => b.name(),
            Device::Cuda(b) => b.name(),
        }
    }
}

/// A device choice that cannot be honoured, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not one of the accepted spellings.
    #[error("--device: unknown device \"{0}\"; expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    /// CUDA was asked for and is not usable here.
    #[error("--device {spec}: {reason}")]
    Unavailable {
        /// What the user asked for.
        spec: String,
        /// Why it cannot be had.
        reason: String,
    },
}

/// Resolves a `--device` value. `auto` takes GPU 0 when the CUDA driver loads and sees
/// a device, else the CPU; the second value says why the CPU was chosen, for the log.
pub fn resolve(spec: &str, cpu_threads: usize) -> Result<(Device, Option<String>), DeviceError> {
    let cpu = || Device::Cpu(CpuBackend::new(cpu_threads));
    let ordinal = match spec {
        "cpu" => return Ok((cpu(), None)),
        "auto" => {
            return Ok(match cuda::available().and_then(|_| CudaBackend::new(0)) {
                Ok(gpu) => (Device::Cuda(Box::new(gpu)), None),
                Err(e) => (
                    cpu(),
                    Some(format!("no usable GPU ({e}); training on the CPU")),
                ),
            });
        }
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(DeviceError::Unknown(other.to_string())),
        },
    };
    let unavailable = |e: gradsweep_kernels::Error| DeviceError::Unavailable {
        spec: spec.to_string(),
        reason: e.to_string(),
    };
    let count = cuda::available().map_err(unavailable)?;
    if ordinal >= count {
        return Err(DeviceError::Unavailable {
            spec: spec.to_string(),
            reason: format!("this machine has {count} CUDA device(s), numbered from 0"),
        });
    }
    let gpu = CudaBackend::new(ordinal).map_err(unavailable)?;
    Ok((Device::Cuda(Box::new(gpu)), None))
}

/// Runs `$body` with `$b` bound to the device's backend, whatever its type.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, |$b:ident| $body:expr) => {
        match $device {
            $crate::device::Device::Cpu($b) => $body,
            $crate::device::Device::Cuda(gpu) => {
                let $b = &**gpu;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_checked_before_any_probe() {
        assert!(matches!(resolve("gpu", 1), Err(DeviceError::Unknown(_))));
        assert!(matches!(resolve("cuda:x", 1), Err(DeviceError::Unknown(_))));
        let (device, note) = resolve("cpu", 3).unwrap();
        assert!(note.is_none());
        assert_eq!(device.name(), "cpu f32 (3 threads)");
    }

    #[test]
    fn auto_falls_back_to_the_cpu_with_a_reason_and_cuda_fails_clearly() {
        match cuda::available() {
            Ok(_) => eprintln!("skipped: this machine has a GPU, the fallback cannot be seen"),
            Err(_) => {
                let (device, note) = resolve("auto", 1).unwrap();
                assert!(matches!(device, Device::Cpu(_)));
                assert!(note.unwrap().contains("training on the CPU"));
                let err = resolve("cuda:0", 1).err().unwrap().to_string();
                assert!(err.starts_with("--device cuda:0: "), "{err}");
            }
        }
    }
}
