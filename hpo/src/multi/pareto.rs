//! Pareto dominance for multi-objective studies: non-dominated sorting, crowding distance and the front.
//!
//! Every function here works on *losses*: objective vectors already mapped by
//! [`Direction::as_loss`] so that smaller is better in every coordinate. That
//! keeps the dominance test a single comparison loop; [`losses`] does the
//! mapping. Callers pass only finite vectors of one length.

use std::cmp::Ordering;

use crate::Direction;

/// `values` mapped so that smaller is better in every objective.
pub fn losses(values: &[f64], directions: &[Direction]) -> Vec<f64> {
    values
        .iter()
        .zip(directions)
        .map(|(&v, d)| d.as_loss(v))
        .collect()
}

/// Whether `a` Pareto-dominates `b`: no worse in every objective and strictly
/// better in at least one. Equal vectors do not dominate each other.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        strictly |= x < y;
    }
    strictly
}

/// Fast non-dominated sorting (Deb et al. 2002): the indices of `points`
/// split into fronts, the first holding every point no other dominates, the
/// second every point dominated only by the first, and so on. Each front is in
/// ascending index order, so the result does not depend on anything but the
/// points and their order. O(M·N²).
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            if dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by_count[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominates_list[j].push(i);
                dominated_by_count[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by_count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by_count[j] -= 1;
                if dominated_by_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::replace(&mut current, next));
    }
    fronts
}

/// Crowding distance of each member of `front` (indices into `points`), in
/// the order of `front`: per objective, the members are sorted and each gets
/// the normalised gap between its neighbours; the two ends get infinity so
/// the extremes of a front always survive truncation. An objective on which
/// every member is equal adds nothing.
pub fn crowding_distance(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut distance = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    // One column of member values per objective.
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n); points[front[0]].len()];
    for &i in front {
        for (column, &v) in columns.iter_mut().zip(&points[i]) {
            column.push(v);
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    for column in &columns {
        add_gaps(column, &mut order, &mut distance);
    }
    distance
}

/// Adds one objective's normalised neighbour gaps (`column[k]` is member
/// `k`'s value) to `distance`; `order` is scratch space.
fn add_gaps(column: &[f64], order: &mut [usize], distance: &mut [f64]) {
    let n = column.len();
    // Ties are broken by position so the sort, and so the distances, are
    // fully determined by the input.
    order.sort_by(|&a, &b| column[a].total_cmp(&column[b]).then(a.cmp(&b)));
    let range = column[order[n - 1]] - column[order[0]];
    // Without spread there are no extremes to keep (which member sorts
    // first is arbitrary) and no gap to normalise.
    if range <= 0.0 || !range.is_finite() {
        return;
    }
    distance[order[0]] = f64::INFINITY;
    distance[order[n - 1]] = f64::INFINITY;
    for w in 1..n - 1 {
        distance[order[w]] += (column[order[w + 1]] - column[order[w - 1]]) / range;
    }
}

/// The indices of the non-dominated points (the first front), ascending.
/// Cheaper than a full sort: after ordering the points lexicographically no
/// point can be dominated by a later one, and anything dominated is
/// dominated by some member of the front found so far (dominance is
/// transitive), so each point is checked against the front only.
pub fn pareto_front(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| lexicographic(&points[a], &points[b]).then(a.cmp(&b)));
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if !front.iter().any(|&f| dominates(&points[f], &points[i])) {
            front.push(i);
        }
    }
    front.sort_unstable();
    front
}

fn lexicographic(a: &[f64], b: &[f64]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
/// The hypervolume dominated by `points` (two objectives, losses) up to the
/// reference point `reference`: the area of the region every front point
/// improves on. Points not better than the reference in both objectives add
/// nothing. The standard quality measure of a 2-objective front: it grows
/// when the front moves toward the ideal or spreads along it.
pub(crate) fn hypervolume_2d(points: &[Vec<f64>], reference: [f64; 2]) -> f64 {
    let mut inside: Vec<[f64; 2]> = points
        .iter()
        .filter(|p| p.len() == 2 && p[0] < reference[0] && p[1] < reference[1])
        .map(|p| [p[0], p[1]])
        .collect();
    inside.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let mut area = 0.0;
    let mut ceiling = reference[1];
    for p in inside {
        if p[1] < ceiling {
            area += (reference[0] - p[0]) * (ceiling - p[1]);
            ceiling = p[1];
        }
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_points(seed: u64, n: usize, m: usize) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                // A coarse grid makes ties and duplicates common, the cases
                // that break careless dominance code.
                (0..m).map(|_| f64::from(rng.gen_range(0..6))).collect()
            })
            .collect()
    }

    #[test]
    fn dominance_needs_one_strict_improvement() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(dominates(&[0.0, 0.0], &[1.0, 1.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]), "equal points");
        assert!(!dominates(&[0.0, 3.0], &[1.0, 2.0]), "a trade-off");
        assert!(!dominates(&[1.0, 3.0], &[1.0, 2.0]));
        assert_eq!(
            losses(&[0.9, 12.0], &[Direction::Maximize, Direction::Minimize]),
            vec![-0.9, 12.0]
        );
    }

    #[test]
    fn fronts_partition_the_points_and_respect_dominance() {
        for seed in 0..20 {
            let m = 2 + (seed as usize % 3);
            let points = random_points(seed, 40, m);
            let fronts = non_dominated_sort(&points);
            let mut rank = vec![usize::MAX; points.len()];
            for (r, front) in fronts.iter().enumerate() {
                assert!(!front.is_empty());
                for &i in front {
                    assert_eq!(rank[i], usize::MAX, "point {i} in two fronts");
                    rank[i] = r;
                }
            }
            assert!(rank.iter().all(|&r| r != usize::MAX), "every point ranked");
            for i in 0..points.len() {
                for j in 0..points.len() {
                    if dominates(&points[i], &points[j]) {
                        assert!(rank[i] < rank[j], "{i} dominates {j}");
                    }
                }
                // A point of front r > 0 is dominated by some point of front r - 1.
                if rank[i] > 0 {
                    assert!(fronts[rank[i] - 1]
                        .iter()
                        .any(|&d| dominates(&points[d], &points[i])));
                }
            }
        }
    }

    #[test]
    fn pareto_front_is_mutually_non_dominated_and_excludes_every_dominated_point() {
        for seed in 0..30 {
            let points = random_points(seed, 50, 2 + (seed as usize % 3));
            let front = pareto_front(&points);
            assert_eq!(front, non_dominated_sort(&points)[0], "seed {seed}");
            for &a in &front {
                for &b in &front {
                    assert!(!dominates(&points[a], &points[b]), "{a} dominates {b}");
                }
            }
            for i in (0..points.len()).filter(|i| !front.contains(i)) {
                assert!(
                    points.iter().any(|p| dominates(p, &points[i])),
                    "{i} left out but not dominated"
                );
                assert!(front.iter().any(|&f| dominates(&points[f], &points[i])));
            }
        }
        assert!(pareto_front(&[]).is_empty());
        // Duplicates do not dominate each other: both stay.
        let dup = vec![vec![1.0, 1.0], vec![1.0, 1.0], vec![2.0, 2.0]];
        assert_eq!(pareto_front(&dup), vec![0, 1]);
    }

    #[test]
    fn crowding_distance_keeps_the_extremes_and_rewards_isolation() {
        let points = vec![
            vec![0.0, 4.0],
            vec![1.0, 3.0],
            vec![1.2, 2.8],
            vec![3.0, 1.0],
            vec![4.0, 0.0],
        ];
        let front = vec![0, 1, 2, 3, 4];
        let d = crowding_distance(&points, &front);
        assert!(d[0].is_infinite() && d[4].is_infinite());
        // Point 3 sits alone between 2 and 4; point 1 is crowded by 2.
        assert!(d[3] > d[1] && d[3] > d[2], "{d:?}");
        // Each finite distance is the sum of the normalised neighbour gaps.
        assert!((d[1] - (1.2 / 4.0 + 1.2 / 4.0)).abs() < 1e-12, "{d:?}");
        assert_eq!(crowding_distance(&points, &[1, 3]), vec![f64::INFINITY; 2]);
        // An objective without spread adds nothing and divides by nothing.
        let flat = vec![vec![1.0, 0.0], vec![1.0, 1.0], vec![1.0, 2.0]];
        let d = crowding_distance(&flat, &[0, 1, 2]);
        assert_eq!(d[1], 1.0);
    }

    #[test]
    fn hypervolume_of_known_fronts() {
        let r = [4.0, 4.0];
        assert_eq!(hypervolume_2d(&[vec![1.0, 1.0]], r), 9.0);
        // Two points: 3x1 + 1x2 (the second adds the strip left of the first).
        assert_eq!(
            hypervolume_2d(&[vec![1.0, 3.0], vec![2.0, 1.0]], r),
            3.0 + 4.0
        );
        // A dominated point and one outside the reference add nothing.
        let more = [
            vec![1.0, 3.0],
            vec![2.0, 1.0],
            vec![3.0, 3.0],
            vec![5.0, 0.0],
        ];
        assert_eq!(hypervolume_2d(&more, r), 7.0);
        assert_eq!(hypervolume_2d(&[], r), 0.0);
    }
}
