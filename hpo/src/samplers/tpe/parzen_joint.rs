//! Joint Parzen estimator for multivariate TPE: one product kernel per observation over a group of parameters.
//!
//! Follows Optuna's `_ParzenEstimator` with `multivariate=True`: each
//! observation contributes one component whose density is the product of
//! its per-parameter kernels, so a draw takes a whole point from one
//! observation's neighbourhood and correlations between parameters survive.
//! Each numeric kernel has its own bandwidth, the larger gap to its sorted
//! neighbours with Optuna's magic clip: Optuna (since 4.x) uses these
//! adaptive bandwidths for joint estimators too, in place of the older
//! shared Scott-like 0.2·n^(−1/(d+4))·range, and they concentrate on a good
//! region much sooner (bench/RESULTS.md, "HPO against Optuna").
//! Categorical kernels are Optuna's smoothed one-hot rows; the prior is one
//! more component.
//!
//! On a grid the observations sit on grid points, so their gaps, and hence
//! their bandwidths, take few distinct values; a cell's mass depends only on
//! the bandwidth and on how many steps separate the candidate from the
//! observation, so masses are cached per (bandwidth, distance) instead of
//! recomputed for every observation and candidate.

use rand::Rng;

use super::parzen::{
    cumulative, draw_index, ln_gauss_mass, log_sum_exp, neighbour_sigmas, Support, LN_SQRT_2PI,
};

/// Grids with more cells than this compute cell masses directly instead of
/// caching them by distance (the cache would cost more than it saves).
const MAX_CACHED_CELLS: usize = 1 << 16;

/// One dimension of the group, in internal space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DimSpec {
    /// A continuous interval `[low, high]`, or with `step` the grid
    /// `low + k*step` whose first and last points are `low` and `high`.
    Numeric {
        low: f64,
        high: f64,
        step: Option<f64>,
    },
    /// Choice indices `0..n_choices`.
    Categorical { n_choices: usize },
}

#[derive(Debug, Clone)]
struct NumericKernel {
    support: Support,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    inv_sigmas: Vec<f64>,
    /// Per observation, every constant of its log density: − ln of its
    /// truncation mass and, when continuous, − ln σ − ln √(2π).
    log_coefs: Vec<f64>,
    prior_mu: f64,
    prior_sigma: f64,
    prior_log_coef: f64,
    /// On a grid: each observation's index into `cells`, whose entry for a
    /// distinct bandwidth holds, by `d`, the ln mass of the cell `d` steps
    /// from the observation's μ (NaN until first needed; empty when the grid
    /// is too large to cache).
    sigma_class: Vec<usize>,
    cells: Vec<Vec<f64>>,
}

impl NumericKernel {
    fn new(low: f64, high: f64, step: Option<f64>, mus: Vec<f64>) -> Self {
        let support = Support::new(low, high, step);
        // Observations snap to the grid so that candidate-to-observation
        // distances are whole numbers of steps (the cache key).
        let mus: Vec<f64> = match support.grid {
            Some(g) => mus.iter().map(|&m| g.snap(m)).collect(),
            None => mus,
        };
        let (_, sigmas) = neighbour_sigmas(&mus, &support);
        let density_norm = |s: f64| match step {
            Some(_) => 0.0,
            None => -s.ln() - LN_SQRT_2PI,
        };
        let log_coefs = mus
            .iter()
            .zip(&sigmas)
            .map(|(&mu, &sigma)| density_norm(sigma) - support.ln_mass(mu, sigma))
            .collect();
        let prior_mu = 0.5 * (low + high);
        let prior_sigma = support.range();
        let (sigma_class, cells) = match support.grid {
            Some(g) => {
                let mut distinct: Vec<f64> = sigmas.clone();
                distinct.sort_by(f64::total_cmp);
                distinct.dedup();
                let class = sigmas
                    .iter()
                    .map(|s| distinct.partition_point(|d| d.total_cmp(s).is_lt()))
                    .collect();
                let row = if (g.n as usize) < MAX_CACHED_CELLS {
                    g.n as usize + 1
                } else {
                    0
                };
                (class, vec![vec![f64::NAN; row]; distinct.len()])
            }
            None => (Vec::new(), Vec::new()),
        };
        NumericKernel {
            support,
            mus,
            inv_sigmas: sigmas.iter().map(|s| 1.0 / s).collect(),
            sigmas,
            log_coefs,
            prior_mu,
            prior_sigma,
            prior_log_coef: density_norm(prior_sigma) - support.ln_mass(prior_mu, prior_sigma),
            sigma_class,
            cells,
        }
    }

    /// ln of the (untruncated) kernel at distance `d = x − μ` for bandwidth `sigma`.
    fn ln_kernel(&self, d: f64, sigma: f64) -> f64 {
        match self.support.grid {
            None => {
                let z = d / sigma;
                -0.5 * z * z
            }
            Some(g) => {
                let half = 0.5 * g.step;
                ln_gauss_mass((d - half) / sigma, (d + half) / sigma)
            }
        }
    }

    /// Adds each observation's ln kernel at `x` to `terms`.
    fn add_terms(&mut self, x: f64, terms: &mut [f64]) {
        match self.support.grid {
            None => {
                let obs = self.mus.iter().zip(&self.inv_sigmas).zip(&self.log_coefs);
                for (t, ((&mu, &inv), &c)) in terms.iter_mut().zip(obs) {
                    let z = (x - mu) * inv;
                    *t += c - 0.5 * z * z;
                }
            }
            Some(g) => {
                let half = 0.5 * g.step;
                let obs = self.mus.iter().zip(&self.sigmas).zip(&self.log_coefs);
                for ((t, ((&mu, &sigma), &c)), &class) in
                    terms.iter_mut().zip(obs).zip(&self.sigma_class)
                {
                    // The mass is symmetric in the distance, so |d| keys it.
                    let steps = ((x - mu) / g.step).round().abs();
                    let slot = self.cells[class].get_mut(steps as usize);
                    let cell = match slot {
                        Some(v) if !v.is_nan() => *v,
                        slot => {
                            let d = steps * g.step;
                            let v = ln_gauss_mass((d - half) / sigma, (d + half) / sigma);
                            if let Some(s) = slot {
                                *s = v;
                            }
                            v
                        }
                    };
                    *t += c + cell;
                }
            }
        }
    }

    fn prior_term(&self, x: f64) -> f64 {
        self.prior_log_coef + self.ln_kernel(x - self.prior_mu, self.prior_sigma)
    }

    fn draw<R: Rng + ?Sized>(&self, component: Option<usize>, rng: &mut R) -> f64 {
        let (mu, sigma) = match component {
            Some(k) => (self.mus[k], self.sigmas[k]),
            None => (self.prior_mu, self.prior_sigma),
        };
        self.support.draw(rng, mu, sigma)
    }
}

#[derive(Debug, Clone)]
struct CategoricalKernel {
    choices: Vec<usize>,
    n_choices: usize,
    /// ln probability an observation's kernel gives its own choice, and any other.
    log_hit: f64,
    log_miss: f64,
    /// Probability that a draw from an observation's kernel takes its own
    /// choice outright (otherwise it is uniform over all choices).
    keep: f64,
}

impl CategoricalKernel {
    fn new(n_choices: usize, choices: Vec<usize>, prior_weight: f64) -> Self {
        // Optuna's rows: prior_weight / n_kernels on every choice plus 1 on
        // the observed one, normalised.
        let eps = prior_weight / (choices.len() + 1) as f64;
        let denom = 1.0 + n_choices as f64 * eps;
        CategoricalKernel {
            choices,
            n_choices,
            log_hit: ((1.0 + eps) / denom).ln(),
            log_miss: (eps / denom).ln(),
            keep: 1.0 / denom,
        }
    }

    fn add_terms(&self, x: f64, terms: &mut [f64]) {
        let x = x as usize;
        for (t, &c) in terms.iter_mut().zip(&self.choices) {
            *t += if c == x { self.log_hit } else { self.log_miss };
        }
    }

    fn draw<R: Rng + ?Sized>(&self, component: Option<usize>, rng: &mut R) -> f64 {
        // The row is "own choice with weight 1, ε everywhere": taking the own
        // choice with probability 1/(1 + Cε), else a uniform one, draws from it
        // exactly. The prior's row is uniform.
        match component {
            Some(k) if rng.gen::<f64>() < self.keep => self.choices[k] as f64,
            _ => rng.gen_range(0..self.n_choices) as f64,
        }
    }
}

#[derive(Debug, Clone)]
enum Kernel {
    Numeric(NumericKernel),
    Categorical(CategoricalKernel),
}

/// Mixture of product kernels, one per observation, plus the prior.
#[derive(Debug, Clone)]
pub(crate) struct JointParzen {
    /// ln normalised weight of each observation's component, then the prior's.
    log_weights: Vec<f64>,
    cum_weights: Vec<f64>,
    kernels: Vec<Kernel>,
}

impl JointParzen {
    /// `columns[j][i]` is observation `i`'s internal value of dimension `j`
    /// (a choice index for categoricals), `weights[i]` its weight.
    pub(crate) fn new(
        dims: &[DimSpec],
        columns: Vec<Vec<f64>>,
        weights: &[f64],
        prior_weight: f64,
    ) -> Self {
        let n = weights.len();
        let mut w: Vec<f64> = weights.to_vec();
        w.push(if n == 0 { 1.0 } else { prior_weight });
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= total);
        let kernels = dims
            .iter()
            .zip(columns)
            .map(|(dim, col)| match *dim {
                DimSpec::Numeric { low, high, step } => {
                    Kernel::Numeric(NumericKernel::new(low, high, step, col))
                }
                DimSpec::Categorical { n_choices } => Kernel::Categorical(CategoricalKernel::new(
                    n_choices,
                    col.iter().map(|&c| c as usize).collect(),
                    prior_weight,
                )),
            })
            .collect();
        JointParzen {
            log_weights: w.iter().map(|x| x.ln()).collect(),
            cum_weights: cumulative(&w),
            kernels,
        }
    }

    /// One joint draw into `out` (one value per dimension).
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut Vec<f64>) {
        let k = draw_index(rng, &self.cum_weights);
        let component = (k + 1 < self.log_weights.len()).then_some(k);
        out.clear();
        for kernel in &self.kernels {
            out.push(match kernel {
                Kernel::Numeric(nk) => nk.draw(component, rng),
                Kernel::Categorical(ck) => ck.draw(component, rng),
            });
        }
    }

    /// ln of the joint density (a probability on grid and categorical
    /// dimensions) at `x`. `terms` is scratch space, one slot per component.
    pub(crate) fn log_pdf(&mut self, x: &[f64], terms: &mut Vec<f64>) -> f64 {
        terms.clear();
        terms.extend_from_slice(&self.log_weights);
        let n_obs = terms.len() - 1;
        let (obs_terms, prior_term) = terms.split_at_mut(n_obs);
        for (kernel, &xj) in self.kernels.iter_mut().zip(x) {
            match kernel {
                Kernel::Numeric(nk) => {
                    nk.add_terms(xj, obs_terms);
                    prior_term[0] += nk.prior_term(xj);
                }
                Kernel::Categorical(ck) => {
                    ck.add_terms(xj, obs_terms);
                    prior_term[0] -= (ck.n_choices as f64).ln();
                }
            }
        }
        log_sum_exp(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn numeric(low: f64, high: f64, step: Option<f64>) -> DimSpec {
        DimSpec::Numeric { low, high, step }
    }

    fn dims() -> Vec<DimSpec> {
        vec![
            numeric(0.0, 1.0, None),
            numeric(0.0, 6.0, Some(2.0)),
            DimSpec::Categorical { n_choices: 3 },
        ]
    }

    fn mixture() -> JointParzen {
        JointParzen::new(
            &dims(),
            vec![
                vec![0.1, 0.2, 0.8],
                vec![0.0, 2.0, 6.0],
                vec![0.0, 0.0, 2.0],
            ],
            &[1.0, 1.0, 1.0],
            1.0,
        )
    }

    #[test]
    fn joint_density_integrates_to_one() {
        let mut mix = mixture();
        let mut terms = Vec::new();
        let n = 2000;
        let h = 1.0 / n as f64;
        let mut total = 0.0;
        for i in 0..n {
            let x0 = (i as f64 + 0.5) * h;
            for k in 0..4 {
                for c in 0..3 {
                    let p = mix.log_pdf(&[x0, 2.0 * k as f64, c as f64], &mut terms);
                    total += p.exp() * h;
                }
            }
        }
        assert!((total - 1.0).abs() < 1e-3, "{total}");
    }

    #[test]
    fn cached_cell_masses_match_direct_ones() {
        // A fine grid: many distances, each computed once and reused.
        let dims = [numeric(0.0, 99.0, Some(1.0))];
        let obs: Vec<f64> = (0..40).map(|i| ((i * 37) % 100) as f64).collect();
        let weights = vec![1.0; obs.len()];
        let mut cached = JointParzen::new(&dims, vec![obs.clone()], &weights, 1.0);
        let mut terms = Vec::new();
        let total: f64 = (0..100)
            .map(|k| cached.log_pdf(&[k as f64], &mut terms).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // The same values a second time come from the cache.
        let again: f64 = (0..100)
            .map(|k| cached.log_pdf(&[k as f64], &mut terms).exp())
            .sum();
        assert_eq!(total, again);
    }

    #[test]
    fn draws_stay_in_support_and_follow_the_observations_jointly() {
        // Two observations at opposite corners: a joint draw from one
        // observation's kernel keeps both coordinates on the same side.
        let dims = [numeric(0.0, 1.0, None), numeric(0.0, 1.0, None)];
        let cols = vec![
            vec![0.05, 0.95, 0.05, 0.95, 0.05, 0.95],
            vec![0.05, 0.95, 0.05, 0.95, 0.05, 0.95],
        ];
        let mix = JointParzen::new(&dims, cols, &[1.0; 6], 0.01);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut x = Vec::new();
        let (mut same_side, mut total) = (0, 0);
        for _ in 0..2000 {
            mix.sample(&mut rng, &mut x);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "{x:?}");
            if (x[0] - 0.5).abs() > 0.2 && (x[1] - 0.5).abs() > 0.2 {
                total += 1;
                same_side += usize::from((x[0] > 0.5) == (x[1] > 0.5));
            }
        }
        // Independent marginals would put half of these on opposite sides.
        assert!(same_side * 10 > total * 9, "{same_side}/{total}");
        let grid = mixture();
        for _ in 0..500 {
            grid.sample(&mut rng, &mut x);
            assert!(x[1] % 2.0 == 0.0 && (0.0..=6.0).contains(&x[1]), "{x:?}");
            assert!(x[2] < 3.0 && x[2].fract() == 0.0, "{x:?}");
        }
    }

    #[test]
    fn no_observations_is_the_prior() {
        let mut mix = JointParzen::new(&dims(), vec![vec![], vec![], vec![]], &[], 1.0);
        let mut terms = Vec::new();
        let a = mix.log_pdf(&[0.5, 2.0, 1.0], &mut terms);
        let b = mix.log_pdf(&[0.5, 2.0, 2.0], &mut terms);
        assert!((a - b).abs() < 1e-12, "uniform over choices: {a} vs {b}");
        assert!(a.is_finite());
    }
}
