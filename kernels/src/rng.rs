//! Counter-based random numbers for dropout masks.
//!
//! A mask element depends only on `(key, index)`, never on the order in which it is
//! drawn, so the CPU and every GPU thread layout draw the same mask for the same trial,
//! layer and step. The CUDA kernels implement the same two functions.

/// Mixes a 64-bit value (the SplitMix64 finaliser).
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) with 24 random bits, for element `index` under `key`.
#[inline(always)]
pub fn uniform(key: u64, index: u64) -> f32 {
    let h = mix64(key ^ mix64(index.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Whether dropout with drop probability `p` keeps element `index` under `key`.
#[inline(always)]
pub fn dropout_keep(key: u64, index: u64, p: f32) -> bool {
    uniform(key, index) >= p
}

/// The dropout key of one layer at one training step of one trial.
pub fn dropout_key(seed: u64, layer: u64, step: u64) -> u64 {
    mix64(mix64(seed ^ 0x6a09_e667_f3bc_c909).wrapping_add(layer << 48 ^ step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rate_matches_probability() {
        for p in [0.0f32, 0.2, 0.5, 0.9] {
            let n = 200_000u64;
            let kept = (0..n)
                .filter(|&i| dropout_keep(dropout_key(7, 1, 3), i, p))
                .count();
            let rate = kept as f64 / n as f64;
            assert!((rate - (1.0 - p as f64)).abs() < 0.005, "p={p} kept {rate}");
        }
    }

    #[test]
    fn keys_differ_by_layer_and_step() {
        let a: Vec<bool> = (0..256)
            .map(|i| dropout_keep(dropout_key(1, 0, 0), i, 0.5))
            .collect();
        let b: Vec<bool> = (0..256)
            .map(|i| dropout_keep(dropout_key(1, 1, 0), i, 0.5))
            .collect();
        let c: Vec<bool> = (0..256)
            .map(|i| dropout_keep(dropout_key(1, 0, 1), i, 0.5))
            .collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
