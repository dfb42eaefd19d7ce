//! Weight initialisation, as PyTorch defines each scheme.

use crate::config::Init;
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// Draws one Linear layer's `(weight, bias)` (`fan_out × fan_in` and `fan_out`), in f64:
///
/// - `default` = PyTorch's `nn.Linear`: W, b ~ U(±1/√fan_in);
/// - `xavier_uniform`: W ~ U(±√(6/(fan_in+fan_out))); `xavier_normal`: N(0, 2/(fan_in+fan_out));
/// - `he_uniform`: W ~ U(±√(6/fan_in)); `he_normal`: N(0, 2/fan_in);
///
/// the named schemes zero the bias. Weights are drawn before the bias, row by row.
pub fn linear(
    init: Init,
    fan_in: usize,
    fan_out: usize,
    rng: &mut impl Rng,
) -> (Vec<f64>, Vec<f64>) {
    let n = fan_in * fan_out;
    let (fi, fo) = (fan_in as f64, fan_out as f64);
    let uniform = |bound: f64, count: usize, rng: &mut dyn rand::RngCore| -> Vec<f64> {
        // Closed bounds are never hit in practice; `Uniform::new` only fails for
        // bound <= 0, which a positive fan_in excludes.
        let dist = Uniform::new(-bound, bound).expect("bound is positive");
        (0..count).map(|_| dist.sample(rng)).collect()
    };
    let normal = |std: f64, count: usize, rng: &mut dyn rand::RngCore| -> Vec<f64> {
        let dist = Normal::new(0.0, std).expect("std is finite and positive");
        (0..count).map(|_| dist.sample(rng)).collect()
    };
    match init {
        Init::Default => {
            let bound = 1.0 / fi.sqrt();
            let w = uniform(bound, n, rng);
            let b = uniform(bound, fan_out, rng);
            (w, b)
        }
        Init::XavierUniform => (
            uniform((6.0 / (fi + fo)).sqrt(), n, rng),
            vec![0.0; fan_out],
        ),
        Init::XavierNormal => (normal((2.0 / (fi + fo)).sqrt(), n, rng), vec![0.0; fan_out]),
        Init::HeUniform => (uniform((6.0 / fi).sqrt(), n, rng), vec![0.0; fan_out]),
        Init::HeNormal => (normal((2.0 / fi).sqrt(), n, rng), vec![0.0; fan_out]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn stats(x: &[f64]) -> (f64, f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        (mean, var.sqrt(), max)
    }

    #[test]
    fn each_scheme_has_pytorchs_scale() {
        let (fan_in, fan_out) = (400, 100);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cases = [
            (
                Init::Default,
                1.0 / (fan_in as f64).sqrt() / 3f64.sqrt(),
                true,
            ),
            (Init::XavierUniform, (2.0 / 500.0f64).sqrt(), false),
            (Init::XavierNormal, (2.0 / 500.0f64).sqrt(), false),
            (Init::HeUniform, (2.0 / 400.0f64).sqrt(), false),
            (Init::HeNormal, (2.0 / 400.0f64).sqrt(), false),
        ];
        for (init, want_std, nonzero_bias) in cases {
            let (w, b) = linear(init, fan_in, fan_out, &mut rng);
            assert_eq!(w.len(), fan_in * fan_out);
            let (mean, std, _) = stats(&w);
            assert!(mean.abs() < 0.01 * want_std * 10.0, "{init:?} mean {mean}");
            assert!(
                (std / want_std - 1.0).abs() < 0.03,
                "{init:?} std {std} want {want_std}"
            );
            assert_eq!(b.iter().any(|&v| v != 0.0), nonzero_bias, "{init:?} bias");
        }
        let (w, b) = linear(Init::Default, fan_in, fan_out, &mut rng);
        let bound = 1.0 / (fan_in as f64).sqrt();
        assert!(stats(&w).2 <= bound && stats(&b).2 <= bound);
    }
}
