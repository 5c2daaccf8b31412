//! The per-trial RNG every sampler draws from.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The RNG for one trial. The seed keys a ChaCha8 generator and the trial
/// number picks its stream: streams are independent by construction, so trial
/// `n` draws the same numbers whether it is asked first or after a thousand
/// others, and parallel asks need no shared RNG state.
pub(crate) fn trial_rng(seed: u64, trial_number: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(trial_number);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn trial_rng_depends_only_on_seed_and_number() {
        let a = trial_rng(1, 5).next_u64();
        assert_eq!(a, trial_rng(1, 5).next_u64());
        assert_ne!(a, trial_rng(1, 6).next_u64());
        assert_ne!(a, trial_rng(2, 5).next_u64());
    }
}
