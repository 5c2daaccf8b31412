//! Seeded, deterministic k-fold splits, stratified by class for classification.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{invalid, Result};

/// Positions (into the caller's row list) of one fold's training and
/// validation rows, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

/// Splits `n` rows into `k` folds. With `classes` (one class index per row)
/// each class is shuffled and dealt round-robin across folds, so every fold
/// has close to the overall class mix; the dealing continues where the
/// previous class stopped so fold sizes stay within one of each other.
///
/// The same `n`, `k`, `classes` and `seed` always give the same folds
/// (ChaCha8 is portable across platforms and versions).
pub fn kfold(n: usize, k: usize, seed: u64, classes: Option<&[usize]>) -> Result<Vec<Fold>> {
    if k < 2 {
        return Err(invalid(format!("folds must be at least 2, got {k}")));
    }
    if n < k {
        return Err(invalid(format!(
            "cannot split {n} rows into {k} folds; every fold needs at least one row"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut assignment = vec![0usize; n];
    match classes {
        Some(classes) => {
            if classes.len() != n {
                return Err(invalid(format!(
                    "stratification needs one class per row: {n} rows, {} classes",
                    classes.len()
                )));
            }
            let n_classes = classes.iter().copied().max().map_or(0, |m| m + 1);
            let mut next_fold = 0;
            for class in 0..n_classes {
                let mut members: Vec<usize> = (0..n).filter(|&i| classes[i] == class).collect();
                members.shuffle(&mut rng);
                for i in members {
                    assignment[i] = next_fold;
                    next_fold = (next_fold + 1) % k;
                }
            }
        }
        None => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            for (pos, i) in order.into_iter().enumerate() {
                assignment[i] = pos % k;
            }
        }
    }
    let folds: Vec<Fold> = (0..k)
        .map(|f| {
            let (valid, train): (Vec<usize>, Vec<usize>) =
                (0..n).partition(|&i| assignment[i] == f);
            Fold { train, valid }
        })
        .collect();
    if let Some(i) = folds
        .iter()
        .position(|f| f.valid.is_empty() || f.train.is_empty())
    {
        return Err(invalid(format!("fold {i} of {k} would be empty")));
    }
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_rows_and_are_deterministic() {
        let a = kfold(103, 5, 7, None).unwrap_or_default();
        let b = kfold(103, 5, 7, None).unwrap_or_default();
        let c = kfold(103, 5, 8, None).unwrap_or_default();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut all: Vec<usize> = a.iter().flat_map(|f| f.valid.clone()).collect();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        for f in &a {
            assert!(f.valid.len() == 20 || f.valid.len() == 21);
            assert_eq!(f.train.len() + f.valid.len(), 103);
            assert!(f.valid.iter().all(|v| f.train.binary_search(v).is_err()));
        }
    }

    #[test]
    fn stratified_folds_keep_class_balance() {
        // 90 of class 0, 10 of class 1.
        let classes: Vec<usize> = (0..100).map(|i| usize::from(i % 10 == 0)).collect();
        let folds = kfold(100, 5, 1, Some(&classes)).unwrap_or_default();
        assert_eq!(folds.len(), 5);
        for f in &folds {
            let pos = f.valid.iter().filter(|&&i| classes[i] == 1).count();
            assert_eq!(pos, 2);
            assert_eq!(f.valid.len(), 20);
        }
        assert_eq!(folds, kfold(100, 5, 1, Some(&classes)).unwrap_or_default());
    }

    #[test]
    fn bad_fold_counts_are_invalid() {
        assert!(kfold(10, 1, 0, None).is_err());
        assert!(kfold(3, 4, 0, None).is_err());
        assert!(kfold(4, 2, 0, Some(&[0, 1])).is_err());
        assert!(kfold(4, 4, 0, None).is_ok());
    }
}
