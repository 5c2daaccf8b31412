//! How margins become outputs, for the families whose margins are logits
//! (linear, nn, and the library trees' softmax): written once so that the
//! same logits give the same probabilities, to the last bit, whichever
//! family produced them.

/// The logistic function, in the form that neither overflows nor loses the
/// small probabilities of very negative logits.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Turns logits into probabilities in place, shifted by their maximum so no
/// exponential overflows.
pub(crate) fn softmax_in_place(z: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// The two outputs of a binary model whose positive class (class 1) has
/// probability `p`.
pub(crate) fn two_classes(p: f64, out: &mut [f64]) {
    out[0] = 1.0 - p;
    out[1] = p;
}
