//! Parzen estimators for TPE (truncated-normal mixtures, continuous or on a grid, and smoothed categoricals) and the normal-distribution maths they need.
//!
//! Follows Optuna's `_ParzenEstimator` (independent sampling, prior on, magic
//! clip on, endpoints not considered). Hot paths are laid out for speed: each
//! mixture keeps its components as parallel arrays with every per-component
//! constant of the log density precomputed, and `log_pdf` evaluates a
//! candidate in one allocation-free pass over them.

use rand::Rng;

/// ln √(2π).
pub(crate) const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Terms further than this below the largest one change a log-sum-exp by less
/// than n·e^-40 (relative); skipping their `exp` is most of the saving when
/// there are many observations and each candidate is near only a few of them.
const LSE_CUTOFF: f64 = 40.0;

/// Standard-normal intervals narrower than this use the midpoint rule: the
/// two CDF values are too close for their difference to keep precision.
const NARROW: f64 = 1e-3;

/// erfc(x) for x >= 0 as `(t, e)` with erfc(x) = t·exp(e), so callers can
/// stay in log space (never underflowing) or take one `exp`, whichever is cheaper.
///
/// Numerical Recipes' Chebyshev fit (`erfcc`): relative error below 1.2e-7 for
/// all x >= 0, ample for ranking TPE candidates.
fn erfc_parts(x: f64) -> (f64, f64) {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    (t, poly - x * x)
}

/// Beyond this many standard deviations a tail holds < 1e-17 of the mass,
/// below f64 resolution next to the ≥ 1/3 a straddling interval holds.
const TAIL_NEGLIGIBLE: f64 = 8.5;

/// Standard-normal mass beyond `z >= 0`: ½erfc(z/√2).
fn upper_tail(z: f64) -> f64 {
    if z > TAIL_NEGLIGIBLE {
        return 0.0;
    }
    let (t, e) = erfc_parts(z * std::f64::consts::FRAC_1_SQRT_2);
    0.5 * t * e.exp()
}

/// ln(Φ(b) − Φ(a)) for a < b: the standard-normal mass of [a, b], stable in both tails.
pub(crate) fn ln_gauss_mass(a: f64, b: f64) -> f64 {
    // Mirror so the interval never lies wholly in the lower tail; the
    // upper-tail branch below is the accurate one.
    let (a, b) = if b <= 0.0 { (-b, -a) } else { (a, b) };
    let width = b - a;
    if width < NARROW {
        let mid = 0.5 * (a + b);
        // ∫ φ over the cell ≈ w·φ(m)·(1 + w²(m² − 1)/24).
        return width.ln() - 0.5 * mid * mid - LN_SQRT_2PI
            + (width * width * (mid * mid - 1.0) / 24.0).ln_1p();
    }
    if a < 0.0 {
        // Straddles 0: one minus both excluded tails, each at most 1/2. Most
        // truncation normalisers land here with both tails negligible.
        if -a > TAIL_NEGLIGIBLE && b > TAIL_NEGLIGIBLE {
            return 0.0;
        }
        (1.0 - upper_tail(-a) - upper_tail(b)).ln()
    } else {
        // Both in the upper tail: ½erfc(a/√2)·(1 − erfc(b/√2)/erfc(a/√2)), in logs.
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let (ta, ea) = erfc_parts(a * s);
        let (tb, eb) = erfc_parts(b * s);
        let ratio = tb / ta * (eb - ea).exp();
        ta.ln() + ea + (-ratio).ln_1p() - std::f64::consts::LN_2
    }
}

/// A standard-normal draw (Box–Muller; loop-free so every draw costs the
/// same two uniforms, which keeps RNG consumption easy to reason about).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.gen::<f64>(); // (0, 1]: ln stays finite
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A normal(mu, sigma) draw truncated to [lo, hi], by rejection.
pub(crate) fn truncated_normal<R: Rng + ?Sized>(
    rng: &mut R,
    mu: f64,
    sigma: f64,
    lo: f64,
    hi: f64,
) -> f64 {
    for _ in 0..64 {
        let x = mu + sigma * standard_normal(rng);
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    // Unreachable in practice: every component has μ inside [lo, hi] and
    // σ ≤ hi − lo, so at least 34% of its mass lies inside. The fallback only
    // guarantees termination and an in-range value.
    rng.gen_range(lo..=hi)
}

/// Optuna's bandwidth for the `j`-th (1-based) of `n` sorted observations,
/// from its gaps to the sorted neighbours (the support ends count as
/// neighbours): the larger gap, except that once there are two observations
/// the outermost ones only look inwards. The caller applies the magic clip.
pub(crate) fn neighbour_gap(left: f64, right: f64, j: usize, n: usize) -> f64 {
    if n >= 2 && j == 1 {
        right
    } else if n >= 2 && j == n {
        left
    } else {
        left.max(right)
    }
}

/// Optuna's `default_weights`: equal weights, except that past 25
/// observations the older ones (in trial order) ramp linearly from 1/n up to
/// 1, so the estimator follows where the search has moved.
pub(crate) fn observation_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let start = 1.0 / n as f64;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.resize(n, 1.0);
    w
}

/// Observation weights for `n` observations in trial order, as `(index,
/// weight)`: Optuna's weights up to `cap` observations; past it, a
/// systematic sample of `cap` draws with probability proportional to those
/// weights, each draw carrying `total / cap` (an index drawn twice carries
/// twice that). The sample keeps the mixture's expected density and its
/// total weight (so the prior's share is unchanged) while bounding the
/// components every candidate is scored against: that is what keeps an
/// ask's cost flat past a few thousand trials, where exact Parzen
/// estimators grow linearly. `rng` is drawn from only when capping.
pub(crate) fn capped_weights<R: Rng + ?Sized>(
    n: usize,
    cap: usize,
    rng: &mut R,
) -> Vec<(usize, f64)> {
    let weights = observation_weights(n);
    if n <= cap || cap == 0 {
        return weights.into_iter().enumerate().collect();
    }
    let total: f64 = weights.iter().sum();
    let step = total / cap as f64;
    let mut next = rng.gen::<f64>() * step;
    let mut cum = 0.0;
    let mut out = Vec::with_capacity(cap);
    for (i, w) in weights.into_iter().enumerate() {
        cum += w;
        let mut count = 0u32;
        while next < cum {
            count += 1;
            next += step;
        }
        if count > 0 {
            out.push((i, f64::from(count) * step));
        }
    }
    out
}

/// Mixture weights: observations then the prior, normalised. With no
/// observations the prior is the whole mixture.
fn mixture_weights(obs_weights: &[f64], prior_weight: f64) -> Vec<f64> {
    let n_obs = obs_weights.len();
    let mut w = obs_weights.to_vec();
    w.push(if n_obs == 0 { 1.0 } else { prior_weight });
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|x| *x /= total);
    w
}

pub(crate) fn cumulative(weights: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// Index drawn with probability proportional to the increments of `cum`.
pub(crate) fn draw_index<R: Rng + ?Sized>(rng: &mut R, cum: &[f64]) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let u = rng.gen::<f64>() * total;
    cum.partition_point(|&c| c <= u)
        .min(cum.len().saturating_sub(1))
}

/// A grid `low + k*step`, `k = 0..=n` (`n` the index of the last point), in
/// internal space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) low: f64,
    pub(crate) step: f64,
    pub(crate) n: f64,
}

impl Grid {
    /// The grid point nearest `x`, the end points for `x` beyond them.
    pub(crate) fn snap(self, x: f64) -> f64 {
        self.low + ((x - self.low) / self.step).round().clamp(0.0, self.n) * self.step
    }
}

/// A numeric parameter's support in internal space, shared by the
/// univariate and joint estimators: `[low, high]`, or with a step the grid
/// `low + k*step` widened by half a step on each side, so every grid point,
/// the ends included, owns a cell of the same width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Support {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) grid: Option<Grid>,
}

impl Support {
    /// `low`/`high` are the interval's ends, or the first/last grid points with `step`.
    pub(crate) fn new(low: f64, high: f64, step: Option<f64>) -> Self {
        let half = 0.5 * step.unwrap_or(0.0);
        Support {
            lo: low - half,
            hi: high + half,
            grid: step.map(|step| Grid {
                low,
                step,
                n: ((high - low) / step).round(),
            }),
        }
    }

    pub(crate) fn range(&self) -> f64 {
        self.hi - self.lo
    }

    /// ln of the mass the normal (`mu`, `sigma`) puts on the support.
    pub(crate) fn ln_mass(&self, mu: f64, sigma: f64) -> f64 {
        ln_gauss_mass((self.lo - mu) / sigma, (self.hi - mu) / sigma)
    }

    /// A draw from the normal (`mu`, `sigma`) truncated to the support,
    /// snapped to the grid when there is one.
    pub(crate) fn draw<R: Rng + ?Sized>(&self, rng: &mut R, mu: f64, sigma: f64) -> f64 {
        let x = truncated_normal(rng, mu, sigma, self.lo, self.hi);
        match self.grid {
            Some(g) => g.snap(x),
            None => x,
        }
    }
}

/// Optuna's per-observation bandwidths: each value's `neighbour_gap` to
/// its sorted neighbours (the support's ends beyond the outermost), then
/// the magic clip to [range / min(100, n + 2), range], so a cluster of
/// equal values can't collapse to a spike. Answers the values' ascending
/// order and each value's bandwidth (indexed like `values`). Ties sort in
/// input order, so the result depends on nothing but the inputs.
pub(crate) fn neighbour_sigmas(values: &[f64], support: &Support) -> (Vec<usize>, Vec<f64>) {
    let n = values.len();
    let range = support.range();
    let min_sigma = range / (100.0f64).min(1.0 + (n + 1) as f64);
    // Sorted once, as packed integers (order-preserving bits of the value,
    // then the position): much faster than comparing f64s.
    let mut packed: Vec<u128> = values
        .iter()
        .enumerate()
        .map(|(i, &x)| (u128::from(order_bits(x)) << 64) | i as u128)
        .collect();
    packed.sort_unstable();
    let order: Vec<usize> = packed.iter().map(|&k| (k as u64) as usize).collect();
    // Position j of the sorted values with the support's ends at 0 and n + 1.
    let at = |j: usize| -> f64 {
        if j == 0 {
            support.lo
        } else if j == n + 1 {
            support.hi
        } else {
            values[order[j - 1]]
        }
    };
    let mut sigmas = vec![0.0; n];
    for j in 1..=n {
        let gap = neighbour_gap(at(j) - at(j - 1), at(j + 1) - at(j), j, n);
        sigmas[order[j - 1]] = gap.clamp(min_sigma, range);
    }
    (order, sigmas)
}

/// Mixture of normals truncated to the parameter's support, one per
/// observation plus a broad prior; on a grid each component's density is
/// its mass over the grid cell.
#[derive(Debug, Clone)]
pub(crate) struct TruncNormMixture {
    support: Support,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    inv_sigmas: Vec<f64>,
    /// ln weight − ln truncation mass, and, when continuous, − ln σ − ln √(2π):
    /// every per-component constant of the log density.
    log_coefs: Vec<f64>,
    /// On a grid: ln(step / σ), for the cheap upper bound that skips far components.
    log_widths: Vec<f64>,
    cum_weights: Vec<f64>,
}

impl TruncNormMixture {
    /// `obs` are internal-space values in trial order (it sets the weights);
    /// `low`/`high` are the support ends, or the first/last grid points with `step`.
    #[cfg(test)]
    pub(crate) fn new(
        obs: &[f64],
        low: f64,
        high: f64,
        step: Option<f64>,
        prior_weight: f64,
    ) -> Self {
        Self::new_weighted(
            obs,
            &observation_weights(obs.len()),
            low,
            high,
            step,
            prior_weight,
        )
    }

    /// As `new`, with each observation's weight given (`obs_weights[i]` for
    /// `obs[i]`), e.g. from `capped_weights`.
    pub(crate) fn new_weighted(
        obs: &[f64],
        obs_weights: &[f64],
        low: f64,
        high: f64,
        step: Option<f64>,
        prior_weight: f64,
    ) -> Self {
        let support = Support::new(low, high, step);
        let range = support.range();
        let n = obs.len();
        let (order, obs_sigmas) = neighbour_sigmas(obs, &support);
        let mut mus = Vec::with_capacity(n + 1);
        let mut sigmas = Vec::with_capacity(n + 1);
        let mut weights = Vec::with_capacity(n + 1);
        let mut run_start = 0; // first merged component with the current μ
        for i in order {
            let (mu, sigma, w) = (obs[i], obs_sigmas[i], obs_weights[i]);
            // Components with equal (μ, σ) merge by adding weights: the mixture
            // is unchanged, but values on a grid repeat and collapse to about
            // two components per grid point (interior duplicates get the
            // minimum σ, the ends of each run a gap), which bounds the cost of
            // exact cell masses by the grid size instead of the trial count.
            if mus.last() != Some(&mu) {
                run_start = mus.len();
            }
            match sigmas[run_start..].iter().position(|&s| s == sigma) {
                Some(k) => weights[run_start + k] += w,
                None => {
                    mus.push(mu);
                    sigmas.push(sigma);
                    weights.push(w);
                }
            }
        }
        // The prior: centred, as wide as the support.
        mus.push(0.5 * (low + high));
        sigmas.push(range);
        weights.push(if n == 0 { 1.0 } else { prior_weight });
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);

        let m = mus.len();
        let mut log_coefs = Vec::with_capacity(m);
        let mut log_widths = Vec::with_capacity(if step.is_some() { m } else { 0 });
        for k in 0..m {
            let (mu, sigma) = (mus[k], sigmas[k]);
            let ln_mass = support.ln_mass(mu, sigma);
            // One `ln` per component: this loop runs over every observation on every ask.
            let c = match step {
                Some(step) => {
                    log_widths.push((step / sigma).ln());
                    weights[k].ln() - ln_mass
                }
                None => (weights[k] / sigma).ln() - LN_SQRT_2PI - ln_mass,
            };
            log_coefs.push(c);
        }
        TruncNormMixture {
            support,
            inv_sigmas: sigmas.iter().map(|s| 1.0 / s).collect(),
            mus,
            sigmas,
            log_coefs,
            log_widths,
            cum_weights: cumulative(&weights),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.mus.len()
    }

    /// One draw, snapped to the grid when there is one.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let k = draw_index(rng, &self.cum_weights);
        self.support.draw(rng, self.mus[k], self.sigmas[k])
    }

    /// ln of the mixture density (or, on a grid, probability) at `x`.
    /// `scratch` holds one term per component; reusing it keeps this allocation-free.
    pub(crate) fn log_pdf(&self, x: f64, scratch: &mut Vec<f64>) -> f64 {
        scratch.clear();
        scratch.resize(self.len(), 0.0);
        let buf = scratch.as_mut_slice();
        match self.support.grid {
            None => {
                for (((t, &mu), &inv), &c) in buf
                    .iter_mut()
                    .zip(&self.mus)
                    .zip(&self.inv_sigmas)
                    .zip(&self.log_coefs)
                {
                    let z = (x - mu) * inv;
                    *t = c - 0.5 * z * z;
                }
            }
            Some(g) => {
                let half = 0.5 * g.step;
                // Pass 1: an upper bound per term, since the cell mass is at
                // most min(1, width × the density's peak over the cell).
                for ((((t, &mu), &inv), &c), &lw) in buf
                    .iter_mut()
                    .zip(&self.mus)
                    .zip(&self.inv_sigmas)
                    .zip(&self.log_coefs)
                    .zip(&self.log_widths)
                {
                    let d = ((x - mu).abs() * inv - half * inv).max(0.0);
                    *t = c + (lw - 0.5 * d * d - LN_SQRT_2PI).min(0.0);
                }
                let exact = |k: usize| -> f64 {
                    let inv = self.inv_sigmas[k];
                    let mu = self.mus[k];
                    self.log_coefs[k] + ln_gauss_mass((x - half - mu) * inv, (x + half - mu) * inv)
                };
                let best = argmax(buf);
                // The most promising term's exact value is a floor for the
                // final maximum; terms whose bound is far below it are negligible.
                let floor = exact(best) - LSE_CUTOFF;
                for (k, t) in buf.iter_mut().enumerate() {
                    *t = if *t >= floor {
                        exact(k)
                    } else {
                        f64::NEG_INFINITY
                    };
                }
            }
        }
        log_sum_exp(buf)
    }
}

/// Bits of `x` whose unsigned order is `f64::total_cmp`'s order.
fn order_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

pub(crate) fn log_sum_exp(terms: &[f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let mut sum = 0.0;
    for &t in terms {
        let d = t - max;
        if d > -LSE_CUTOFF {
            sum += d.exp();
        }
    }
    max + sum.ln()
}

/// Weighted mixture of smoothed one-hot kernels plus a uniform prior,
/// collapsed to one probability per choice (Optuna's categorical estimator).
#[derive(Debug, Clone)]
pub(crate) struct CategoricalMixture {
    log_probs: Vec<f64>,
    cum: Vec<f64>,
}

impl CategoricalMixture {
    /// `obs` are choice indices (< `n_choices`) in trial order.
    #[cfg(test)]
    pub(crate) fn new(obs: &[usize], n_choices: usize, prior_weight: f64) -> Self {
        Self::new_weighted(
            obs,
            &observation_weights(obs.len()),
            n_choices,
            prior_weight,
        )
    }

    /// As `new`, with each observation's weight given.
    pub(crate) fn new_weighted(
        obs: &[usize],
        obs_weights: &[f64],
        n_choices: usize,
        prior_weight: f64,
    ) -> Self {
        let c = n_choices as f64;
        let mut probs = vec![1.0 / c; n_choices];
        if !obs.is_empty() {
            let weights = mixture_weights(obs_weights, prior_weight);
            let (obs_w, prior_w) = weights.split_at(obs.len());
            // Each observation's kernel puts prior_weight / n_kernels on every
            // choice and 1 more on its own, normalised; the prior kernel is uniform.
            let eps = prior_weight / (obs.len() + 1) as f64;
            let denom = 1.0 + c * eps;
            let spread = obs_w.iter().sum::<f64>() * eps / denom + prior_w[0] / c;
            probs.iter_mut().for_each(|p| *p = spread);
            for (&i, &w) in obs.iter().zip(obs_w) {
                if let Some(p) = probs.get_mut(i) {
                    *p += w / denom;
                }
            }
        }
        CategoricalMixture {
            log_probs: probs.iter().map(|p| p.ln()).collect(),
            cum: cumulative(&probs),
        }
    }

    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        draw_index(rng, &self.cum)
    }

    pub(crate) fn log_prob(&self, choice: usize) -> f64 {
        self.log_probs
            .get(choice)
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }
}

#[cfg(test)]
#[path = "parzen_tests.rs"]
mod tests;
