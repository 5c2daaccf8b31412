//! The neural-network family: a multilayer perceptron trained with libtorch
//! (feature `torch`, see `train`) and served in plain Rust from its weights.
//!
//! Network: for each hidden layer `linear -> batch norm (optional) -> ReLU
//! -> dropout`, then a linear output: one unit for regression (trained on the
//! standardised target) and binary classification (the positive class's
//! logit), one logit per class for multiclass (softmax).
//!
//! Serving needs no libtorch: the weights are stored as a safetensors
//! state dict (PyTorch names and shapes, `f32`), and prediction folds batch
//! norm into the linear layers and runs the forward pass in `f64` here. So a
//! serving replica built without `torch` loads and predicts nn artifacts
//! like any other family; only training needs libtorch.
//!
//! Contributions are exact integrated gradients (see `explain`) from the
//! all-zero encoded row, the same reference the linear family uses: numeric
//! features at their training mean, no category. They sum to the margin
//! minus the base value, like the other families' contributions.

#[cfg(feature = "torch")]
mod device;
mod explain;
#[cfg(feature = "torch")]
mod net;
#[cfg(test)]
mod tests;
#[cfg(feature = "torch")]
pub mod train;
#[cfg(feature = "torch")]
pub(crate) use device::threads_from_env;
#[cfg(feature = "torch")]
pub use device::NnDevice;
#[cfg(feature = "torch")]
pub use train::{NnTrainer, TrainReport};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize, Serializer};

use super::outputs::{sigmoid, softmax_in_place, two_classes};
pub use super::params::MAX_EPOCHS;
use super::params::{NN_MAX_LAYERS, NN_MAX_WIDTH};
use crate::error::{LearnError, Result};

/// Batch norm's epsilon (PyTorch's default), stored with each model.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// What the output layer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NnKind {
    /// One unit: the standardised target.
    Regression,
    /// One unit: the logit of the positive class (class 1).
    Binary,
    /// One logit per class, softmax.
    Multiclass,
}

/// The architecture, everything but the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NnSpec {
    pub kind: NnKind,
    pub n_features: usize,
    /// Width of each hidden layer.
    pub hidden: Vec<usize>,
    pub batch_norm: bool,
    pub batch_norm_eps: f64,
    /// Output units: 1, or the number of classes for multiclass.
    pub outputs: usize,
    /// Regression outputs are `target_mean + target_scale * unit`; 0 and 1
    /// for classification.
    pub target_mean: f64,
    pub target_scale: f64,
}

/// One named `f32` tensor of the state dict, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A dense layer of the folded inference network: `outputs x inputs`
/// row-major weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f64>,
    pub bias: Vec<f64>,
}

impl Dense {
    /// `out = W x + b`.
    pub fn apply(&self, x: &[f64], out: &mut [f64]) {
        for ((o, row), b) in out
            .iter_mut()
            .zip(self.weights.chunks_exact(self.inputs))
            .zip(&self.bias)
        {
            *o = b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
        }
    }
}

/// A fitted multilayer perceptron.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(try_from = "NnRepr")]
pub struct NnModel {
    pub spec: NnSpec,
    /// The state dict as trained, in [`expected_tensors`] order.
    tensors: Vec<NamedTensor>,
    /// Hidden layers then the output layer, batch norm and target scale folded in.
    layers: Vec<Dense>,
}

/// Stored form: the architecture plus the state dict as base64 safetensors,
/// so the weights can be lifted out and loaded by PyTorch as they are.
#[derive(Serialize, Deserialize)]
struct NnRepr {
    spec: NnSpec,
    weights_safetensors: String,
}

/// Names and shapes of the state dict for `spec`, in a fixed order.
pub fn expected_tensors(spec: &NnSpec) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut inputs = spec.n_features;
    for (i, &width) in spec.hidden.iter().enumerate() {
        out.push((format!("hidden.{i}.weight"), vec![width, inputs]));
        out.push((format!("hidden.{i}.bias"), vec![width]));
        if spec.batch_norm {
            for part in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("norm.{i}.{part}"), vec![width]));
            }
        }
        inputs = width;
    }
    out.push(("output.weight".to_string(), vec![spec.outputs, inputs]));
    out.push(("output.bias".to_string(), vec![spec.outputs]));
    out
}

fn check_spec(spec: &NnSpec) -> std::result::Result<(), String> {
    let outputs_ok = match spec.kind {
        NnKind::Regression | NnKind::Binary => spec.outputs == 1,
        NnKind::Multiclass => spec.outputs >= 3,
    };
    let scale_ok = spec.target_mean.is_finite()
        && spec.target_scale.is_finite()
        && spec.target_scale > 0.0
        && (spec.kind == NnKind::Regression
            || (spec.target_mean == 0.0 && spec.target_scale == 1.0));
    if !outputs_ok || !scale_ok {
        return Err(format!(
            "nn model: {:?} with {} outputs and target scale {}/{} is inconsistent",
            spec.kind, spec.outputs, spec.target_mean, spec.target_scale
        ));
    }
    if spec.n_features == 0
        || spec.hidden.is_empty()
        || spec.hidden.len() > NN_MAX_LAYERS
        || spec.hidden.iter().any(|&w| w == 0 || w > NN_MAX_WIDTH)
    {
        return Err(format!(
            "nn model: {} inputs and hidden widths {:?} are outside 1..={NN_MAX_LAYERS} \
             layers of 1..={NN_MAX_WIDTH} units",
            spec.n_features, spec.hidden
        ));
    }
    if !(spec.batch_norm_eps.is_finite() && spec.batch_norm_eps > 0.0) {
        return Err("nn model: batch norm epsilon must be positive".to_string());
    }
    Ok(())
}

impl NnModel {
    /// Checks `tensors` against `spec` (names, shapes, finite values, in
    /// [`expected_tensors`] order) and builds the inference layers.
    pub fn new(spec: NnSpec, tensors: Vec<NamedTensor>) -> std::result::Result<NnModel, String> {
        check_spec(&spec)?;
        let expected = expected_tensors(&spec);
        if tensors.len() != expected.len() {
            return Err(format!(
                "nn model: {} tensors, the architecture needs {}",
                tensors.len(),
                expected.len()
            ));
        }
        for (t, (name, shape)) in tensors.iter().zip(&expected) {
            if t.name != *name || t.shape != *shape {
                return Err(format!(
                    "nn model: tensor '{}' {:?} where '{name}' {shape:?} belongs",
                    t.name, t.shape
                ));
            }
            if t.values.len() != shape.iter().product::<usize>() {
                return Err(format!("nn model: tensor '{name}' has the wrong length"));
            }
            if t.values.iter().any(|v| !v.is_finite()) {
                return Err(format!("nn model: tensor '{name}' has non-finite values"));
            }
        }
        let layers = fold_layers(&spec, &tensors)?;
        Ok(NnModel {
            spec,
            tensors,
            layers,
        })
    }

    pub fn n_features(&self) -> usize {
        self.spec.n_features
    }

    pub fn output_width(&self) -> usize {
        match self.spec.kind {
            NnKind::Regression => 1,
            NnKind::Binary => 2,
            NnKind::Multiclass => self.spec.outputs,
        }
    }

    /// The state dict, as trained.
    pub fn tensors(&self) -> &[NamedTensor] {
        &self.tensors
    }

    /// The state dict as safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                TensorView::new(Dtype::F32, t.shape.clone(), b).map(|v| (t.name.as_str(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| LearnError::Internal(format!("nn weights: {e}")))?;
        safetensors::serialize(views, None)
            .map_err(|e| LearnError::Internal(format!("nn weights: {e}")))
    }

    /// Reads a state dict for `spec` from safetensors bytes.
    pub fn from_safetensors(spec: NnSpec, bytes: &[u8]) -> Result<NnModel> {
        let corrupt = |m: String| LearnError::Corrupt(format!("nn weights: {m}"));
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        check_spec(&spec).map_err(LearnError::Corrupt)?;
        let expected = expected_tensors(&spec);
        if st.len() != expected.len() {
            return Err(corrupt(format!(
                "{} tensors, the architecture needs {}",
                st.len(),
                expected.len()
            )));
        }
        let tensors = expected
            .into_iter()
            .map(|(name, _)| {
                let view = st
                    .tensor(&name)
                    .map_err(|e| corrupt(format!("'{name}': {e}")))?;
                if view.dtype() != Dtype::F32 {
                    return Err(corrupt(format!("'{name}' is {:?}, not F32", view.dtype())));
                }
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Ok(NamedTensor {
                    name,
                    shape: view.shape().to_vec(),
                    values,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        NnModel::new(spec, tensors).map_err(LearnError::Corrupt)
    }

    /// Output-layer logits (regression: in target units) for one row.
    fn logits(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = vec![0.0; layer.outputs];
            layer.apply(&h, &mut z);
            if i < last {
                for v in &mut z {
                    *v = v.max(0.0);
                }
            }
            h = z;
        }
        h
    }

    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        let z = self.logits(x);
        match self.spec.kind {
            NnKind::Regression => out[0] = z[0],
            NnKind::Binary => two_classes(sigmoid(z[0]), out),
            NnKind::Multiclass => {
                out.copy_from_slice(&z);
                softmax_in_place(out);
            }
        }
    }

    /// The output unit that explains `class`.
    fn unit_for(&self, class: usize) -> usize {
        match self.spec.kind {
            NnKind::Multiclass => class.min(self.spec.outputs - 1),
            NnKind::Regression | NnKind::Binary => 0,
        }
    }

    pub fn margin_row(&self, x: &[f64], class: usize) -> f64 {
        self.logits(x)[self.unit_for(class)]
    }

    pub fn contributions_row(&self, x: &[f64], class: usize, out: &mut [f64]) {
        explain::integrated_gradients(&self.layers, self.unit_for(class), x, out);
    }
}

/// Inference layers: eval-mode batch norm `(z - mean) / sqrt(var + eps) *
/// gamma + beta` is an affine map per unit, so it folds into the linear
/// layer before it; the regression target scale folds into the output layer.
fn fold_layers(spec: &NnSpec, tensors: &[NamedTensor]) -> std::result::Result<Vec<Dense>, String> {
    let get = |name: &str| -> std::result::Result<&[f32], String> {
        tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.values.as_slice())
            .ok_or_else(|| format!("nn model: tensor '{name}' is missing"))
    };
    let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let mut layers = Vec::with_capacity(spec.hidden.len() + 1);
    let mut inputs = spec.n_features;
    for (i, &width) in spec.hidden.iter().enumerate() {
        let mut weights = widen(get(&format!("hidden.{i}.weight"))?);
        let mut bias = widen(get(&format!("hidden.{i}.bias"))?);
        if spec.batch_norm {
            let gamma = get(&format!("norm.{i}.weight"))?;
            let beta = get(&format!("norm.{i}.bias"))?;
            let mean = get(&format!("norm.{i}.running_mean"))?;
            let var = get(&format!("norm.{i}.running_var"))?;
            if var.iter().any(|&v| v < 0.0) {
                return Err(format!("nn model: norm.{i}.running_var is negative"));
            }
            for u in 0..width {
                let s = f64::from(gamma[u]) / (f64::from(var[u]) + spec.batch_norm_eps).sqrt();
                for w in &mut weights[u * inputs..(u + 1) * inputs] {
                    *w *= s;
                }
                bias[u] = (bias[u] - f64::from(mean[u])) * s + f64::from(beta[u]);
            }
        }
        layers.push(Dense {
            inputs,
            outputs: width,
            weights,
            bias,
        });
        inputs = width;
    }
    let scale = spec.target_scale;
    layers.push(Dense {
        inputs,
        outputs: spec.outputs,
        weights: widen(get("output.weight")?)
            .into_iter()
            .map(|w| w * scale)
            .collect(),
        bias: widen(get("output.bias")?)
            .into_iter()
            .map(|b| b * scale + spec.target_mean)
            .collect(),
    });
    if layers
        .iter()
        .any(|l| l.weights.iter().chain(&l.bias).any(|v| !v.is_finite()))
    {
        return Err("nn model: folded weights overflow".to_string());
    }
    Ok(layers)
}

impl TryFrom<NnRepr> for NnModel {
    type Error = LearnError;

    fn try_from(r: NnRepr) -> Result<NnModel> {
        let bytes = BASE64
            .decode(r.weights_safetensors.as_bytes())
            .map_err(|e| LearnError::Corrupt(format!("nn weights are not base64: {e}")))?;
        NnModel::from_safetensors(r.spec, &bytes)
    }
}

impl Serialize for NnModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let bytes = self.to_safetensors().map_err(serde::ser::Error::custom)?;
        NnRepr {
            spec: self.spec.clone(),
            weights_safetensors: BASE64.encode(bytes),
        }
        .serialize(serializer)
    }
}

impl std::fmt::Debug for NnModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parameters: usize = self.tensors.iter().map(|t| t.values.len()).sum();
        f.debug_struct("NnModel")
            .field("spec", &self.spec)
            .field("parameters", &parameters)
            .finish()
    }
}
