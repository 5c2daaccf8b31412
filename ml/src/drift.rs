//! Drift statistics: how far live feature values have moved from a
//! reference sample (the training data's), per feature.
//!
//! Numbers get the population stability index and the two-sample
//! Kolmogorov–Smirnov test; categories get the chi-squared test of
//! homogeneity and the Jensen–Shannon distance. Every test reports its
//! sample sizes and an effect size next to its p-value: with the sample
//! sizes a prediction log reaches, every p-value is small, and only the
//! effect size says whether the move matters.
//!
//! Pure functions over samples; the monitor that feeds them from the
//! prediction log and the training profile is the scheduler's.

use serde::Serialize;
use std::collections::BTreeMap;

/// The proportion an empty bin is given in the PSI, so its logarithm is
/// finite (a common choice; the bin still counts as nearly empty).
pub const PSI_FLOOR: f64 = 1e-4;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Psi {
    pub value: f64,
    pub bins: usize,
    pub n_reference: usize,
    pub n_live: usize,
}

/// The population stability index of `live` against `reference`:
/// Σ (live − ref) · ln(live / ref) over bin proportions. Bins are of equal
/// width over the range of both samples together, as many as Sturges' rule
/// gives for their combined size (⌈log2 n⌉ + 1); an empty bin's proportion
/// is floored at [`PSI_FLOOR`]. Non-finite values are left out. `None`
/// when either sample has no finite value.
pub fn psi(reference: &[f64], live: &[f64]) -> Option<Psi> {
    let r: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let l: Vec<f64> = live.iter().copied().filter(|x| x.is_finite()).collect();
    if r.is_empty() || l.is_empty() {
        return None;
    }
    let n = r.len() + l.len();
    let bins = (n as f64).log2().ceil() as usize + 1;
    let (lo, hi) = r
        .iter()
        .chain(&l)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    let width = (hi - lo) / bins as f64;
    let shares = |xs: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; bins];
        for x in xs {
            let i = if width > 0.0 {
                (((x - lo) / width) as usize).min(bins - 1)
            } else {
                0
            };
            counts[i] += 1;
        }
        counts
            .iter()
            .map(|c| (*c as f64 / xs.len() as f64).max(PSI_FLOOR))
            .collect()
    };
    let (pr, pl) = (shares(&r), shares(&l));
    let value = pr
        .iter()
        .zip(&pl)
        .map(|(e, a)| (a - e) * (a / e).ln())
        .sum();
    Some(Psi {
        value,
        bins,
        n_reference: r.len(),
        n_live: l.len(),
    })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ks {
    /// The largest distance between the two empirical distribution
    /// functions: the effect size, from 0 to 1.
    pub statistic: f64,
    pub p_value: f64,
    pub n_reference: usize,
    pub n_live: usize,
}

/// The two-sample Kolmogorov–Smirnov test. The p-value is the asymptotic
/// one, Q_KS((√nₑ + 0.12 + 0.11/√nₑ)·D) with nₑ = n·m/(n+m) (Stephens'
/// small-sample correction), good from a few dozen values per sample.
/// Non-finite values are left out; `None` when a sample has none.
pub fn ks_two_sample(reference: &[f64], live: &[f64]) -> Option<Ks> {
    let mut a: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let mut b: Vec<f64> = live.iter().copied().filter(|x| x.is_finite()).collect();
    if a.is_empty() || b.is_empty() {
        return None;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    Some(Ks {
        statistic: d,
        p_value: ks_p_value(d, na, nb),
        n_reference: a.len(),
        n_live: b.len(),
    })
}

/// The asymptotic p-value of a two-sample KS statistic `d` for samples of
/// `na` and `nb` values (Stephens' correction, as [`ks_two_sample`]).
fn ks_p_value(d: f64, na: f64, nb: f64) -> f64 {
    let ne = na * nb / (na + nb);
    kolmogorov_sf((ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d)
}

/// The KS test of `live` against a reference kept as evenly spaced
/// quantiles of its `n_reference` values (a training profile): the
/// statistic from the quantiles' distribution function (within about
/// 1/len of the full sample's), the p-value for the reference's real size.
pub fn ks_against_quantiles(quantiles: &[f64], n_reference: usize, live: &[f64]) -> Option<Ks> {
    let mut ks = ks_two_sample(quantiles, live)?;
    let n_reference = n_reference.max(ks.n_reference);
    ks.p_value = ks_p_value(ks.statistic, n_reference as f64, ks.n_live as f64);
    ks.n_reference = n_reference;
    Some(ks)
}

/// Q_KS(λ) = 2 Σₖ (−1)^(k−1) e^(−2k²λ²), the Kolmogorov distribution's
/// survival function.
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=200 {
        let k = f64::from(k);
        let term = sign * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 * sum.abs().max(1e-300) {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChiSquared {
    pub statistic: f64,
    pub degrees_of_freedom: usize,
    pub p_value: f64,
    /// Cramér's V, from 0 (same shares) to 1.
    pub cramers_v: f64,
    pub n_reference: u64,
    pub n_live: u64,
}

/// The chi-squared test of homogeneity of two samples of a category (their
/// counts per category; a category absent from both is ignored), with
/// Cramér's V as the effect size. `None` when a sample is empty or only one
/// category occurs.
pub fn chi_squared(
    reference: &BTreeMap<String, u64>,
    live: &BTreeMap<String, u64>,
) -> Option<ChiSquared> {
    let cats: Vec<&String> = reference
        .keys()
        .chain(live.keys())
        .filter(|c| {
            reference.get(*c).copied().unwrap_or(0) + live.get(*c).copied().unwrap_or(0) > 0
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let nr: u64 = reference.values().sum();
    let nl: u64 = live.values().sum();
    if nr == 0 || nl == 0 || cats.len() < 2 {
        return None;
    }
    let total = (nr + nl) as f64;
    let mut stat = 0.0;
    for c in &cats {
        let (o_r, o_l) = (
            reference.get(*c).copied().unwrap_or(0) as f64,
            live.get(*c).copied().unwrap_or(0) as f64,
        );
        let col = o_r + o_l;
        for (observed, row) in [(o_r, nr as f64), (o_l, nl as f64)] {
            let expected = row * col / total;
            stat += (observed - expected).powi(2) / expected;
        }
    }
    let dof = cats.len() - 1;
    Some(ChiSquared {
        statistic: stat,
        degrees_of_freedom: dof,
        p_value: upper_regularized_gamma(dof as f64 / 2.0, stat / 2.0),
        cramers_v: (stat / total).sqrt(),
        n_reference: nr,
        n_live: nl,
    })
}

/// The Jensen–Shannon distance (base 2, from 0 to 1) between the category
/// shares of two samples; `None` when either is empty.
pub fn jensen_shannon(
    reference: &BTreeMap<String, u64>,
    live: &BTreeMap<String, u64>,
) -> Option<f64> {
    let nr: u64 = reference.values().sum();
    let nl: u64 = live.values().sum();
    if nr == 0 || nl == 0 {
        return None;
    }
    let cats: std::collections::BTreeSet<&String> = reference.keys().chain(live.keys()).collect();
    let kl = |p: f64, m: f64| if p > 0.0 { p * (p / m).log2() } else { 0.0 };
    let mut js = 0.0;
    for c in cats {
        let p = reference.get(c).copied().unwrap_or(0) as f64 / nr as f64;
        let q = live.get(c).copied().unwrap_or(0) as f64 / nl as f64;
        let m = (p + q) / 2.0;
        js += 0.5 * kl(p, m) + 0.5 * kl(q, m);
    }
    Some(js.max(0.0).sqrt())
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Q(s, x) = Γ(s, x) / Γ(s): the chi-squared survival function is
/// Q(k/2, χ²/2). A series below s + 1, a continued fraction above.
pub(crate) fn upper_regularized_gamma(s: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + s * x.ln() - ln_gamma(s)).exp();
    if x < s + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / s, 1.0 / s, s);
        for _ in 0..1000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * front).clamp(0.0, 1.0)
    } else {
        // Lentz's method for the continued fraction of Γ(s, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - s;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -f64::from(i) * (f64::from(i) - s);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (front * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
