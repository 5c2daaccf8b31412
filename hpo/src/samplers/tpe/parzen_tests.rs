//! Unit tests of the univariate Parzen estimators and the normal-distribution maths.

use super::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Reference Φ(b) − Φ(a) by Simpson's rule on the density.
fn mass_by_quadrature(a: f64, b: f64) -> f64 {
    let n = 20_000;
    let h = (b - a) / n as f64;
    let f = |x: f64| (-0.5 * x * x - LN_SQRT_2PI).exp();
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

#[test]
fn gauss_mass_matches_quadrature_and_survives_tails() {
    for (a, b) in [
        (-1.0, 1.0),
        (0.0, 1.0),
        (-3.0, -2.5),
        (2.0, 2.0005),
        (0.3, 5.0),
        (-8.0, 8.0),
        (4.0, 6.0),
    ] {
        let want = mass_by_quadrature(a, b).ln();
        let got = ln_gauss_mass(a, b);
        assert!((got - want).abs() < 1e-5, "[{a}, {b}]: {got} vs {want}");
    }
    // Deep tail: finite and close to the asymptotic ln φ(a) − ln a.
    let got = ln_gauss_mass(40.0, 41.0);
    let approx = -0.5 * 1600.0 - LN_SQRT_2PI - 40f64.ln();
    assert!(
        got.is_finite() && (got - approx).abs() < 1e-2,
        "{got} vs {approx}"
    );
    assert_eq!(ln_gauss_mass(-41.0, -40.0), got);
}

#[test]
fn order_bits_sort_like_total_cmp() {
    let mut xs = vec![
        3.5,
        -0.0,
        0.0,
        -2.0,
        f64::INFINITY,
        1e-300,
        -1e300,
        f64::NEG_INFINITY,
    ];
    let mut by_bits = xs.clone();
    xs.sort_by(f64::total_cmp);
    by_bits.sort_by_key(|&x| order_bits(x));
    assert_eq!(
        xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        by_bits.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn weights_ramp_like_optuna() {
    assert_eq!(observation_weights(3), vec![1.0; 3]);
    let w = observation_weights(30);
    assert_eq!(w.len(), 30);
    assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
    assert!((w[4] - 1.0).abs() < 1e-12);
    assert!(w[1] > w[0] && w[2] > w[1]);
    assert!(w[5..].iter().all(|&x| x == 1.0));
}

#[test]
fn capped_weights_keep_the_total_and_favour_recent_observations() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // Under the cap: Optuna's weights, every index, no draw from the RNG.
    let before = rng.clone().next_u64();
    let small = capped_weights(30, 100, &mut rng);
    assert_eq!(small.len(), 30);
    assert_eq!(rng.clone().next_u64(), before);
    assert_eq!(
        small.iter().map(|&(_, w)| w).collect::<Vec<_>>(),
        observation_weights(30)
    );
    // Over it: at most `cap` distinct indices, ascending, same total.
    let n = 5000;
    let picked = capped_weights(n, 400, &mut rng);
    assert!(
        picked.len() <= 400 && picked.len() > 300,
        "{}",
        picked.len()
    );
    assert!(picked.windows(2).all(|w| w[0].0 < w[1].0));
    let total: f64 = observation_weights(n).iter().sum();
    let got: f64 = picked.iter().map(|&(_, w)| w).sum();
    assert!((got - total).abs() < 1e-6 * total, "{got} vs {total}");
    // Older observations weigh less, so fewer of them are drawn.
    let old = picked.iter().filter(|&&(i, _)| i < n / 2).count();
    assert!(old * 2 < picked.len(), "{old} of {}", picked.len());
}

#[test]
fn continuous_density_integrates_to_one() {
    let mix = TruncNormMixture::new(&[0.1, 0.2, 0.25, 0.9], 0.0, 1.0, None, 1.0);
    let mut scratch = Vec::new();
    let n = 4000;
    let h = 1.0 / n as f64;
    let total: f64 = (0..n)
        .map(|i| mix.log_pdf((i as f64 + 0.5) * h, &mut scratch).exp() * h)
        .sum();
    assert!((total - 1.0).abs() < 1e-3, "{total}");
}

#[test]
fn grid_probabilities_sum_to_one() {
    let mix = TruncNormMixture::new(&[50.0, 100.0, 100.0, 350.0], 50.0, 400.0, Some(50.0), 1.0);
    let mut scratch = Vec::new();
    let total: f64 = (0..8)
        .map(|k| mix.log_pdf(50.0 + 50.0 * k as f64, &mut scratch).exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    // A fine integer grid exercises the narrow-cell path and the far-term skip.
    let obs: Vec<f64> = (0..300).map(|i| ((i * 37) % 1000) as f64).collect();
    let mix = TruncNormMixture::new(&obs, 0.0, 999.0, Some(1.0), 1.0);
    let total: f64 = (0..1000)
        .map(|k| mix.log_pdf(k as f64, &mut scratch).exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
}

#[test]
fn samples_stay_in_support_and_on_grid() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mix = TruncNormMixture::new(&[0.0, 0.0, 1.0], 0.0, 1.0, None, 1.0);
    let grid = TruncNormMixture::new(&[2.0, 6.0], 0.0, 10.0, Some(2.0), 1.0);
    for _ in 0..2000 {
        let x = mix.sample(&mut rng);
        assert!((0.0..=1.0).contains(&x));
        let g = grid.sample(&mut rng);
        assert!((0.0..=10.0).contains(&g) && g % 2.0 == 0.0, "{g}");
    }
}

#[test]
fn categorical_mixture_favours_observed_choices() {
    let mix = CategoricalMixture::new(&[1, 1, 2], 4, 1.0);
    let total: f64 = (0..4).map(|c| mix.log_prob(c).exp()).sum();
    assert!((total - 1.0).abs() < 1e-12);
    assert!(mix.log_prob(1) > mix.log_prob(2));
    assert!(mix.log_prob(2) > mix.log_prob(0));
    assert!((mix.log_prob(0) - mix.log_prob(3)).abs() < 1e-12);
    let uniform = CategoricalMixture::new(&[], 4, 1.0);
    assert!((uniform.log_prob(3) - 0.25f64.ln()).abs() < 1e-12);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let ones = (0..1000).filter(|_| mix.sample(&mut rng) == 1).count();
    assert!(ones > 400, "{ones}");
}
