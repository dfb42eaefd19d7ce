//! Every backend computes the same functions: each op's test is written once, generic
//! over the backend, and instantiated for each backend by `backend_tests!` (test names
//! `<family>::cpu::<op>` and `<family>::cuda::<op>`; one file per op family, as in
//! `src/cpu/` and `src/cuda/`).
//!
//! - Every instance checks the op against a plain f64 reference written here from the
//!   op's definition (not from the CPU code), within f32 tolerances.
//! - The CUDA instance also runs the op on `CpuBackend<f32>` with the same inputs and
//!   requires the same numbers: within 1e-4 relative, and bit for bit where the op is
//!   exact (dropout masks, products, batch gathering, fills and copies).
//!
//! Where CUDA cannot be used the CUDA instances print `skipped: <the probe's reason>`
//! and pass; with `GRADSWEEP_REQUIRE_CUDA=1` they fail instead (the GPU check). Only
//! [`Error::Unavailable`] counts as "cannot be used": any other error fails.

use anyhow::{Context, Result, bail, ensure};
use gradsweep_kernels::rng::dropout_key;
use gradsweep_kernels::{
    Activation, Backend, BatchNormBuffers, BatchNormMode, CpuBackend, CudaBackend, Error,
    Transpose, dropout_keep,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Cpu = CpuBackend<f32>;

fn cuda_required() -> bool {
    std::env::var("GRADSWEEP_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// The CUDA backend on device 0, or `None` after printing why there is none.
fn cuda_backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(dev) => Some(dev),
        Err(e @ Error::Unavailable(_)) if !cuda_required() => {
            println!("skipped: {e}");
            None
        }
        Err(e @ Error::Unavailable(_)) => panic!("GRADSWEEP_REQUIRE_CUDA=1, but {e}"),
        Err(e) => panic!("the CUDA backend failed to start: {e}"),
    }
}

/// Instantiates each named test for the CPU backend (checked against the f64
/// reference) and the CUDA backend (checked against the reference and the CPU twin).
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name(&crate::Cpu::new(2), None)
                }
            )*
        }
        mod cuda {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    match crate::cuda_backend() {
                        Some(dev) => super::$name(&dev, Some(&crate::Cpu::new(2))),
                        None => Ok(()),
                    }
                }
            )*
        }
    };
}

mod buffers;
mod elementwise;
mod loss;
mod matmul;
mod norm;
mod optim;
mod reduce;

#[test]
fn the_cuda_probe_answers_without_panicking() {
    let count = gradsweep_kernels::cuda::available();
    let backend = CudaBackend::new(0);
    match (&count, &backend) {
        (Ok(n), Ok(dev)) => println!("{n} CUDA device(s); device 0 is {}", dev.name()),
        (Err(Error::Unavailable(reason)), Err(Error::Unavailable(_))) => {
            assert!(!reason.is_empty());
            assert!(!cuda_required(), "GRADSWEEP_REQUIRE_CUDA=1 but {reason}");
            println!("skipped: {reason}");
        }
        (Ok(n), Err(e)) => {
            // A driver and a device, but no NVRTC or cuBLAS: still a clear error.
            assert!(matches!(e, Error::Unavailable(_)), "{e}");
            assert!(!cuda_required(), "{n} device(s) but {e}");
            println!("skipped: {e}");
        }
        _ => panic!("inconsistent probe: {count:?} / {backend:?}"),
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `|got − want| ≤ atol + rtol·|want|` for every element (NaN never passes).
fn close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) -> Result<()> {
    ensure!(
        got.len() >= want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w).abs();
        // Written so that a NaN difference fails too.
        let within = d <= atol + rtol * w.abs();
        if !within {
            bail!("{what}[{i}]: got {g}, want {w} (|Δ| = {d:e}, rtol {rtol:e}, atol {atol:e})");
        }
    }
    Ok(())
}

/// [`close`] with the default f32 tolerances: 1e-4 relative, `atol` absolute.
fn close4(what: &str, got: &[f32], want: &[f64], atol: f64) -> Result<()> {
    close(what, got, want, 1e-4, atol)
}

/// The same bits (NaNs included).
fn same_bits(what: &str, got: &[f32], want: &[f32]) -> Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        ensure!(
            g.to_bits() == w.to_bits(),
            "{what}[{i}]: got {g}, want {w} (bit for bit)"
        );
    }
    Ok(())
}

fn all_activations() -> Vec<Activation> {
    [Activation::Identity]
        .into_iter()
        .chain(Activation::HIDDEN)
        .collect()
}

/// f(x) by the textbook formula.
fn act64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Identity => x,
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                0.01 * x
            }
        }
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp() - 1.0
            }
        }
    }
}

/// f'(x) from y = f(x), by the textbook formula.
fn dact64(act: Activation, y: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
        Activation::Relu => (y > 0.0) as u8 as f64,
        Activation::LeakyRelu => {
            if y > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Activation::Elu => {
            if y > 0.0 {
                1.0
            } else {
                y + 1.0
            }
        }
    }
}
