//! Helpers shared by this crate's tests.

/// A small deterministic generator (no dependency), for random histories
/// and stories that are the same on every run.
pub(crate) struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub(crate) fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}
