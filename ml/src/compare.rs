//! Is one variant's live performance really different from another's? The
//! A/B analysis of a deployment compares each variant with its baseline
//! (`primary`, or `stable` during a canary) on every live metric, with the
//! test that fits the metric:
//!
//! - **accuracy**: the two-proportion z-test (pooled standard error for the
//!   test, unpooled for the difference's interval);
//! - **RMSE, MAE, log loss**: Welch's t-test on the per-outcome losses
//!   (squared errors for RMSE, so the test is on the mean squared error),
//!   which does not assume equal variances or equal sizes.
//!
//! Each comparison carries both sample sizes, the difference with its 95%
//! interval, the statistic and its p-value; under [`MIN_OUTCOMES`] per side
//! it says there are not enough outcomes yet instead of a verdict.

use crate::live::{mean_sd, MIN_OUTCOMES, Z95};
use serde::Serialize;

/// One metric of one variant against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub metric: &'static str,
    pub baseline: String,
    pub variant: String,
    pub n_baseline: usize,
    pub n_variant: usize,
    /// The variant's metric minus the baseline's (for RMSE, of the RMSEs).
    pub difference: Option<f64>,
    /// 95% interval of the difference (for RMSE: of the mean squared errors'
    /// difference, the quantity tested).
    pub ci95: Option<[f64; 2]>,
    /// `two_proportion_z` or `welch_t`.
    pub test: &'static str,
    pub statistic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degrees_of_freedom: Option<f64>,
    /// Two-sided.
    pub p_value: Option<f64>,
    /// Whether both sides have at least [`MIN_OUTCOMES`] outcomes.
    pub enough: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Compares per-outcome losses of `metric` (see [`crate::live::Losses`]).
pub fn compare(
    metric: &'static str,
    baseline: (&str, &[f64]),
    variant: (&str, &[f64]),
) -> Comparison {
    let (a, b) = (baseline.1, variant.1);
    let proportion = metric == "accuracy";
    let mut c = Comparison {
        metric,
        baseline: baseline.0.to_string(),
        variant: variant.0.to_string(),
        n_baseline: a.len(),
        n_variant: b.len(),
        difference: None,
        ci95: None,
        test: if proportion {
            "two_proportion_z"
        } else {
            "welch_t"
        },
        statistic: None,
        degrees_of_freedom: None,
        p_value: None,
        enough: a.len() >= MIN_OUTCOMES && b.len() >= MIN_OUTCOMES,
        note: None,
    };
    if !c.enough {
        c.note = Some(format!(
            "not enough outcomes yet: {} and {}, {MIN_OUTCOMES} needed on each side",
            a.len(),
            b.len()
        ));
        return c;
    }
    if proportion {
        let (pa, pb) = (mean(a), mean(b));
        let (na, nb) = (a.len() as f64, b.len() as f64);
        c.difference = Some(pb - pa);
        let se = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
        c.ci95 = Some([pb - pa - Z95 * se, pb - pa + Z95 * se]);
        let pooled = (pa * na + pb * nb) / (na + nb);
        let se0 = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
        if se0 > 0.0 {
            let z = (pb - pa) / se0;
            c.statistic = Some(z);
            c.p_value = Some(normal_two_sided(z));
        } else {
            c.note = Some("every outcome agrees on both sides: nothing to test".into());
        }
        return c;
    }
    let (ma, sa) = mean_sd(a);
    let (mb, sb) = mean_sd(b);
    c.difference = Some(if metric == "rmse" {
        mb.sqrt() - ma.sqrt()
    } else {
        mb - ma
    });
    let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
    let se = (va + vb).sqrt();
    if se == 0.0 {
        c.note = Some("the losses do not vary: nothing to test".into());
        return c;
    }
    let t = (mb - ma) / se;
    let df =
        (va + vb).powi(2) / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
    let q = student_t_quantile(0.975, df);
    c.ci95 = Some([mb - ma - q * se, mb - ma + q * se]);
    c.statistic = Some(t);
    c.degrees_of_freedom = Some(df);
    c.p_value = Some(student_t_two_sided(t, df));
    c
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// P(|Z| ≥ |z|) for a standard normal Z.
pub fn normal_two_sided(z: f64) -> f64 {
    // P(|Z| ≥ |z|) = P(χ²₁ ≥ z²) = Q(1/2, z²/2).
    crate::drift::upper_regularized_gamma(0.5, z * z / 2.0)
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom:
/// I_{df/(df+t²)}(df/2, 1/2).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    regularized_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// The `p` quantile (p > 0.5) of Student's t, by bisection on its tail.
fn student_t_quantile(p: f64, df: f64) -> f64 {
    let tail = 2.0 * (1.0 - p);
    let (mut lo, mut hi) = (0.0, 1e3);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if student_t_two_sided(mid, df) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The regularized incomplete beta function I_x(a, b) (continued fraction,
/// Lentz's method, on the side where it converges fast).
fn regularized_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front =
        crate::drift::ln_gamma(a + b) - crate::drift::ln_gamma(a) - crate::drift::ln_gamma(b)
            + a * x.ln()
            + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..1000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    #[test]
    fn the_t_distribution_matches_its_closed_forms() {
        // df = 1 is Cauchy: P(|T| ≥ t) = 1 - 2·atan(t)/π.
        for t in [0.5f64, 1.0, 3.0] {
            let want = 1.0 - 2.0 * f64::atan(t) / std::f64::consts::PI;
            assert!(close(student_t_two_sided(t, 1.0), want, 1e-10), "{t}");
        }
        // df = 2: P(|T| ≥ t) = 1 - t/√(2 + t²).
        for t in [0.3f64, 2.0, 7.0] {
            let want = 1.0 - t / (2.0 + t * t).sqrt();
            assert!(close(student_t_two_sided(t, 2.0), want, 1e-10), "{t}");
        }
        // Large df tends to the normal; the 97.5% quantile to 1.96.
        assert!(close(student_t_quantile(0.975, 1e6), Z95, 1e-4));
        assert!(close(
            student_t_quantile(0.975, 10.0),
            2.228_138_851_986_274,
            1e-6
        ));
        assert!(close(normal_two_sided(1.959_963_984_540_054), 0.05, 1e-9));
    }

    #[test]
    fn welch_t_agrees_with_the_textbook_computation() {
        // Two groups of 40 with means 1.0 and 1.5 and different spreads.
        let a: Vec<f64> = (0..40)
            .map(|i| 1.0 + ((i % 5) as f64 - 2.0) * 0.3)
            .collect();
        let b: Vec<f64> = (0..40)
            .map(|i| 1.5 + ((i % 4) as f64 - 1.5) * 0.8)
            .collect();
        let c = compare("mae", ("primary", &a), ("b", &b));
        assert_eq!(
            (c.test, c.n_baseline, c.n_variant, c.enough),
            ("welch_t", 40, 40, true)
        );
        let (ma, sa) = mean_sd(&a);
        let (mb, sb) = mean_sd(&b);
        let (va, vb) = (sa * sa / 40.0, sb * sb / 40.0);
        let t = (mb - ma) / (va + vb).sqrt();
        let df = (va + vb).powi(2) / (va * va / 39.0 + vb * vb / 39.0);
        assert!(close(c.statistic.unwrap(), t, 1e-12));
        assert!(close(c.degrees_of_freedom.unwrap(), df, 1e-9));
        assert!(close(c.difference.unwrap(), 0.5, 1e-12));
        // t = 3.17 on 55 degrees of freedom: p = 0.0026.
        let p = c.p_value.unwrap();
        assert!((0.002..0.003).contains(&p), "{p}");
        let [lo, hi] = c.ci95.unwrap();
        assert!(lo > 0.0 && lo < 0.5 && hi > 0.5);
    }

    #[test]
    fn equal_samples_give_no_evidence_of_a_difference() {
        let a: Vec<f64> = (0..50).map(|i| (i % 7) as f64).collect();
        let c = compare("log_loss", ("primary", &a), ("b", &a));
        assert!(close(c.p_value.unwrap(), 1.0, 1e-9));
        assert_eq!(c.difference, Some(0.0));
    }

    #[test]
    fn accuracy_uses_the_two_proportion_z_test() {
        // 90 of 100 against 75 of 100: z = 0.15 / √(p(1-p)(2/100)), p = 0.825.
        let a: Vec<f64> = (0..100).map(|i| if i < 75 { 1.0 } else { 0.0 }).collect();
        let b: Vec<f64> = (0..100).map(|i| if i < 90 { 1.0 } else { 0.0 }).collect();
        let c = compare("accuracy", ("primary", &a), ("b", &b));
        let z = 0.15 / (0.825f64 * 0.175 * 0.02).sqrt();
        assert_eq!(c.test, "two_proportion_z");
        assert!(close(c.statistic.unwrap(), z, 1e-12));
        // z = 2.79145: two-sided p = erfc(z/√2) = 0.0052472.
        assert!(
            close(c.p_value.unwrap(), 0.005_247_2, 1e-6),
            "{:?}",
            c.p_value
        );
    }

    #[test]
    fn too_few_outcomes_say_so_instead_of_testing() {
        let a = vec![1.0; 29];
        let b = vec![2.0; 300];
        let c = compare("mae", ("primary", &a), ("b", &b));
        assert!(!c.enough);
        assert_eq!((c.p_value, c.statistic), (None, None));
        assert!(c
            .note
            .unwrap()
            .contains("not enough outcomes yet: 29 and 300"));
    }
}
