//! Exact integrated gradients for a ReLU network.
//!
//! Integrated gradients attribute `f(x) - f(0)` to the inputs by integrating
//! the gradient along the straight path `t * x`, `t` in [0, 1]. A ReLU
//! network with batch norm folded in is piecewise linear, and so is every
//! pre-activation along that path. Between two consecutive points where some
//! unit changes sign, all activation patterns are fixed, the gradient is
//! constant and the integral is exact. Walking those segments therefore gives
//! attributions that sum to `f(x) - f(0)` up to rounding, with no sampling
//! and no approximation; the cost is one forward and backward pass per
//! segment (typically a few dozen).

use super::Dense;

/// Segments walked before giving up on exactness. Every first-layer unit
/// changes sign at most once along the path, deeper ones rarely more, so real
/// networks stay far below this; past it the rest of the path uses the last
/// segment's gradient and the sum is no longer exact.
const MAX_SEGMENTS: usize = 100_000;

/// Pre-activations within this (relative) distance of zero count as being on
/// the boundary, where the slope decides which side the segment lies on.
const BOUNDARY_EPS: f64 = 1e-12;

/// Writes the attributions of output `unit` for row `x` into `out[..x.len()]`
/// and `f(0)` (the base value) into `out[x.len()]`. `layers` are the hidden
/// layers (ReLU after each) followed by the output layer.
pub(super) fn integrated_gradients(layers: &[Dense], unit: usize, x: &[f64], out: &mut [f64]) {
    let p = x.len();
    out.fill(0.0);
    let Some((output, hidden)) = layers.split_last() else {
        return;
    };
    // Value and slope (d/dt) of every hidden pre-activation at the segment start.
    let mut value: Vec<Vec<f64>> = hidden.iter().map(|l| vec![0.0; l.outputs]).collect();
    let mut slope = value.clone();
    let mut active: Vec<Vec<bool>> = hidden.iter().map(|l| vec![false; l.outputs]).collect();

    let mut t0 = 0.0;
    for segment in 0.. {
        // Forward: at t0 the input is t0 * x and moves with slope x.
        let mut h: Vec<f64> = x.iter().map(|v| v * t0).collect();
        let mut dh: Vec<f64> = x.to_vec();
        let mut t1: f64 = 1.0;
        for (l, layer) in hidden.iter().enumerate() {
            layer.apply(&h, &mut value[l]);
            apply_linear(layer, &dh, &mut slope[l]);
            h.resize(layer.outputs, 0.0);
            dh.resize(layer.outputs, 0.0);
            for u in 0..layer.outputs {
                let (a, d) = (value[l][u], slope[l][u]);
                let on = if a.abs() <= BOUNDARY_EPS * (1.0 + d.abs()) {
                    d > 0.0
                } else {
                    a > 0.0
                };
                active[l][u] = on;
                // Where this unit would cross zero if the pattern held.
                if (on && d < 0.0) || (!on && d > 0.0) {
                    let dt = -a / d;
                    if dt > 0.0 {
                        t1 = t1.min(t0 + dt);
                    }
                }
                (h[u], dh[u]) = if on { (a, d) } else { (0.0, 0.0) };
            }
        }
        if segment == 0 {
            let mut z = vec![0.0; output.outputs];
            output.apply(&h, &mut z);
            out[p] = z[unit];
        }
        if segment >= MAX_SEGMENTS {
            t1 = 1.0;
        }
        // Backward: gradient of the output unit with respect to the input
        // under the current activation pattern.
        let mut g: Vec<f64> = output.weights[unit * output.inputs..(unit + 1) * output.inputs]
            .iter()
            .zip(active.last().map(Vec::as_slice).unwrap_or(&[]))
            .map(|(w, &on)| if on { *w } else { 0.0 })
            .collect();
        for (l, layer) in hidden.iter().enumerate().rev() {
            let mut below = vec![0.0; layer.inputs];
            for (u, row) in layer.weights.chunks_exact(layer.inputs).enumerate() {
                if g[u] != 0.0 {
                    for (b, w) in below.iter_mut().zip(row) {
                        *b += g[u] * w;
                    }
                }
            }
            if l > 0 {
                for (b, &on) in below.iter_mut().zip(&active[l - 1]) {
                    if !on {
                        *b = 0.0;
                    }
                }
            }
            g = below;
        }
        let width = t1 - t0;
        for ((o, xj), gj) in out[..p].iter_mut().zip(x).zip(&g) {
            *o += width * xj * gj;
        }
        if t1 >= 1.0 {
            break;
        }
        t0 = t1;
    }
}

/// `out = W x` (no bias): how pre-activations move with the input.
fn apply_linear(layer: &Dense, x: &[f64], out: &mut [f64]) {
    for (o, row) in out.iter_mut().zip(layer.weights.chunks_exact(layer.inputs)) {
        *o = row.iter().zip(x).map(|(w, v)| w * v).sum();
    }
}
