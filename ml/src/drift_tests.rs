//! Reference values from SciPy 1.17 (`stats.ks_2samp`, `stats.kstwobign`,
//! `stats.chi2_contingency(correction=False)`, `spatial.distance.jensenshannon`,
//! `stats.gamma.sf`) and, for the PSI, the same rule written out in Python.

use super::*;

fn close(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "got {got}, want {want}");
}

fn samples() -> (Vec<f64>, Vec<f64>) {
    let a = (0..50).map(|i| f64::from(i) * 0.1).collect();
    let b = (0..40).map(|i| 1.0 + f64::from(i) * 0.12).collect();
    (a, b)
}

/// Counts of the categories a, b and c.
fn counts(v: [u64; 3]) -> BTreeMap<String, u64> {
    ["a", "b", "c"]
        .iter()
        .map(|c| c.to_string())
        .zip(v)
        .collect()
}

#[test]
fn ks_statistic_and_p_value_match_scipy() {
    let (a, b) = samples();
    let ks = ks_two_sample(&a, &b).unwrap();
    close(ks.statistic, 0.215, 1e-12);
    close(ks.p_value, 0.225_469_398_352_053, 1e-9);
    // Within a hair of SciPy's own asymptotic p-value, which omits
    // Stephens' correction.
    close(ks.p_value, 0.226_077_670_923_489_5, 2e-3);
    assert_eq!((ks.n_reference, ks.n_live), (50, 40));
}

#[test]
fn identical_samples_have_no_ks_distance_and_a_p_value_of_one() {
    let (a, _) = samples();
    let ks = ks_two_sample(&a, &a).unwrap();
    assert_eq!((ks.statistic, ks.p_value), (0.0, 1.0));
    assert!(ks_two_sample(&a, &[f64::NAN]).is_none());
}

#[test]
fn psi_uses_sturges_bins_over_both_samples_and_floors_empty_bins() {
    let (a, b) = samples();
    let p = psi(&a, &b).unwrap();
    assert_eq!(p.bins, 8, "ceil(log2(90)) + 1");
    close(p.value, 2.292_863_918_489_669_8, 1e-12);
    let same = psi(&a, &a).unwrap();
    close(same.value, 0.0, 1e-15);
    assert!(psi(&[], &a).is_none());
}

#[test]
fn chi_squared_and_cramers_v_match_scipy() {
    let t = chi_squared(&counts([50, 30, 20]), &counts([30, 30, 40])).unwrap();
    close(t.statistic, 11.666_666_666_666_668, 1e-12);
    close(t.p_value, 0.002_928_299_694_818_185_3, 1e-12);
    assert_eq!(t.degrees_of_freedom, 2);
    close(t.cramers_v, 0.241_522_945_769_824, 1e-12);
    // A category in neither sample does not count as a degree of freedom.
    let mut with_empty = counts([50, 30, 20]);
    with_empty.insert("d".into(), 0);
    assert_eq!(
        chi_squared(&with_empty, &counts([30, 30, 40]))
            .unwrap()
            .degrees_of_freedom,
        2
    );
    assert!(chi_squared(&counts([1, 0, 0]), &counts([2, 0, 0])).is_none());
}

#[test]
fn jensen_shannon_distance_matches_scipy() {
    let js = jensen_shannon(&counts([50, 30, 20]), &counts([30, 30, 40])).unwrap();
    close(js, 0.206_730_860_332_140_78, 1e-12);
    close(
        jensen_shannon(&counts([1, 2, 3]), &counts([2, 4, 6])).unwrap(),
        0.0,
        1e-7,
    );
}

#[test]
fn the_upper_regularized_gamma_matches_scipy_on_both_branches() {
    close(
        upper_regularized_gamma(2.5, 3.1),
        0.287_241_683_425_560_83,
        1e-12,
    );
    close(
        upper_regularized_gamma(0.5, 0.2),
        0.527_089_256_865_538_1,
        1e-12,
    );
    close(
        upper_regularized_gamma(4.5, 20.0),
        7.598_525_229_464_264e-6,
        1e-15,
    );
}
