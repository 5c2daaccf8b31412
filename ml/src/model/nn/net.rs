//! The MLP as libtorch tensors: training data on the device, the network's
//! parameters (one flat trainable vector plus batch-norm buffers), its
//! forward pass, and the seeded dropout mask bank (see `train` for why
//! masks and initial weights come from our own generator).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, TchError, Tensor};

use super::{expected_tensors, NamedTensor, NnKind, NnSpec};
use crate::matrix::DenseMatrix;

/// Smallest dropout bank, in draws.
const MIN_BANK: usize = 1 << 20;
/// Batch norm running-statistics momentum (PyTorch's default).
const BN_MOMENTUM: f64 = 0.1;

/// Training and validation rows on the device.
pub(super) struct Data {
    pub device: Device,
    pub train_rows: usize,
    pub train_x: Tensor,
    /// Standardised targets (regression), 0/1 (binary) or class indices.
    pub train_y: Tensor,
    pub valid_x: Tensor,
    pub valid_y: Vec<f64>,
}

impl Data {
    pub fn new(
        x: &DenseMatrix,
        y: &[f64],
        spec: &NnSpec,
        train: &[usize],
        valid: &[usize],
        device: Device,
    ) -> std::result::Result<Data, TchError> {
        let rows = |idx: &[usize]| -> std::result::Result<Tensor, TchError> {
            let values: Vec<f32> = idx
                .iter()
                .flat_map(|&i| x.row(i).iter().map(|&v| v as f32))
                .collect();
            Tensor::f_from_slice(&values)?
                .f_view([idx.len() as i64, x.cols as i64])?
                .f_to_device(device)
        };
        let train_y = match spec.kind {
            NnKind::Multiclass => {
                let labels: Vec<i64> = train.iter().map(|&i| y[i] as i64).collect();
                Tensor::f_from_slice(&labels)?
            }
            NnKind::Regression | NnKind::Binary => {
                let targets: Vec<f32> = train
                    .iter()
                    .map(|&i| ((y[i] - spec.target_mean) / spec.target_scale) as f32)
                    .collect();
                Tensor::f_from_slice(&targets)?.f_view([train.len() as i64, 1])?
            }
        };
        Ok(Data {
            device,
            train_rows: train.len(),
            train_x: rows(train)?,
            train_y: train_y.f_to_device(device)?,
            valid_x: rows(valid)?,
            valid_y: valid.iter().map(|&i| y[i]).collect(),
        })
    }
}

/// Where one tensor of the state dict lives on the device.
enum Slot {
    /// Trainable: this range of the flat parameter vector.
    Flat { offset: i64, len: i64 },
    /// Batch norm running statistics, updated in place by libtorch.
    Buffer(Tensor),
}

struct Param {
    name: String,
    shape: Vec<i64>,
    slot: Slot,
}

/// The network's tensors, in `expected_tensors` order.
///
/// Every trainable tensor is a view into one flat leaf tensor, so autograd
/// accumulates all gradients into one buffer and AdamW updates everything
/// with a handful of whole-vector operations instead of a handful per
/// tensor. On a GPU, small networks are bound by kernel launches, and this
/// is what keeps the optimizer from dominating; the arithmetic is the same
/// as AdamW over the separate tensors.
pub(super) struct Net {
    pub kind: NnKind,
    layers: usize,
    batch_norm: bool,
    eps: f64,
    pub flat: Tensor,
    tensors: Vec<Param>,
}

impl Net {
    /// PyTorch's defaults: linear weights and biases uniform in
    /// +-1/sqrt(fan_in); batch norm scale 1, shift 0, running mean 0, var 1.
    pub fn init(
        spec: &NnSpec,
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> std::result::Result<Net, TchError> {
        let mut tensors = Vec::new();
        let mut flat: Vec<f32> = Vec::new();
        // Each linear weight is `[out, in]` and comes just before its bias.
        let mut fan_in = spec.n_features;
        for (name, shape) in expected_tensors(spec) {
            let n: usize = shape.iter().product();
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let slot = if name.starts_with("norm.") {
                let fill = if name.ends_with(".weight") || name.ends_with(".running_var") {
                    1.0
                } else {
                    0.0
                };
                if name.contains(".running_") {
                    let values = vec![fill; n];
                    Slot::Buffer(Tensor::f_from_slice(&values)?.f_to_device(device)?)
                } else {
                    let offset = flat.len() as i64;
                    flat.extend(std::iter::repeat_n(fill, n));
                    Slot::Flat {
                        offset,
                        len: n as i64,
                    }
                }
            } else {
                if shape.len() == 2 {
                    fan_in = shape[1];
                }
                let bound = 1.0 / (fan_in as f32).sqrt();
                let offset = flat.len() as i64;
                flat.extend((0..n).map(|_| rng.gen_range(-bound..bound)));
                Slot::Flat {
                    offset,
                    len: n as i64,
                }
            };
            tensors.push(Param {
                name,
                shape: dims,
                slot,
            });
        }
        let flat = Tensor::f_from_slice(&flat)?
            .f_to_device(device)?
            .f_set_requires_grad(true)?;
        Ok(Net {
            kind: spec.kind,
            layers: spec.hidden.len(),
            batch_norm: spec.batch_norm,
            eps: spec.batch_norm_eps,
            flat,
            tensors,
        })
    }

    /// Tensor `i` of the state dict, as a (differentiable) view when trainable.
    fn tensor(&self, i: usize) -> std::result::Result<Tensor, TchError> {
        let p = &self.tensors[i];
        match &p.slot {
            Slot::Flat { offset, len } => self
                .flat
                .f_narrow(0, *offset, *len)?
                .f_view(p.shape.as_slice()),
            Slot::Buffer(t) => Ok(t.shallow_clone()),
        }
    }

    pub fn forward(
        &self,
        x: &Tensor,
        train: bool,
        bank: Option<&MaskBank>,
        rng: &mut ChaCha8Rng,
    ) -> std::result::Result<Tensor, TchError> {
        let per_layer = if self.batch_norm { 6 } else { 2 };
        let mut h = x.shallow_clone();
        for layer in 0..self.layers {
            let base = layer * per_layer;
            h = h.f_linear(&self.tensor(base)?, Some(&self.tensor(base + 1)?))?;
            if self.batch_norm {
                h = h.f_batch_norm(
                    Some(&self.tensor(base + 2)?),
                    Some(&self.tensor(base + 3)?),
                    Some(&self.tensor(base + 4)?),
                    Some(&self.tensor(base + 5)?),
                    train,
                    BN_MOMENTUM,
                    self.eps,
                    true,
                )?;
            }
            h = h.f_relu()?;
            if let (true, Some(bank)) = (train, bank) {
                let (rows, width) = h.size2()?;
                h = h.f_mul(&bank.mask(rows, width, rng)?)?;
            }
        }
        let base = self.layers * per_layer;
        h.f_linear(&self.tensor(base)?, Some(&self.tensor(base + 1)?))
    }

    /// Eval-mode outputs as the task's predictions (probabilities per
    /// class, or the value in target units), row-major.
    pub fn predict(&self, spec: &NnSpec, x: &Tensor) -> std::result::Result<Vec<f64>, TchError> {
        let _guard = tch::no_grad_guard();
        let out = self.forward(x, false, None, &mut ChaCha8Rng::seed_from_u64(0))?;
        let out = match spec.kind {
            NnKind::Regression => out,
            NnKind::Binary => {
                let p = out.f_sigmoid()?;
                Tensor::f_cat(&[p.f_neg()?.f_add_scalar(1.0)?, p], 1)?
            }
            NnKind::Multiclass => out.f_softmax(1, Kind::Float)?,
        };
        let values = to_vec(&out)?;
        Ok(match spec.kind {
            NnKind::Regression => values
                .iter()
                .map(|&v| spec.target_mean + spec.target_scale * f64::from(v))
                .collect(),
            _ => values.iter().map(|&v| f64::from(v)).collect(),
        })
    }

    /// The current values on the host.
    pub fn snapshot(&self) -> std::result::Result<Vec<NamedTensor>, TchError> {
        let flat = to_vec(&self.flat.f_detach()?)?;
        self.tensors
            .iter()
            .map(|p| {
                let values = match &p.slot {
                    Slot::Flat { offset, len } => {
                        flat[*offset as usize..(*offset + *len) as usize].to_vec()
                    }
                    Slot::Buffer(t) => to_vec(t)?,
                };
                Ok(NamedTensor {
                    name: p.name.clone(),
                    shape: p.shape.iter().map(|&d| d as usize).collect(),
                    values,
                })
            })
            .collect()
    }
}

fn to_vec(t: &Tensor) -> std::result::Result<Vec<f32>, TchError> {
    let flat = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    Vec::<f32>::try_from(&flat)
}

/// Seeded dropout masks: `0` or `1 / (1 - p)` per unit.
pub(super) struct MaskBank {
    bank: Tensor,
    len: usize,
}

impl MaskBank {
    /// At least twice the largest mask, so windows rarely coincide; that is
    /// the size of two activations of one hidden layer, which training holds
    /// anyway.
    pub fn new(
        p: f64,
        largest: usize,
        rng: &mut ChaCha8Rng,
        device: Device,
    ) -> std::result::Result<MaskBank, TchError> {
        let len = MIN_BANK.max(2 * largest);
        let keep = (1.0 / (1.0 - p)) as f32;
        let values: Vec<f32> = (0..len)
            .map(|_| if rng.gen::<f64>() < p { 0.0 } else { keep })
            .collect();
        Ok(MaskBank {
            bank: Tensor::f_from_slice(&values)?.f_to_device(device)?,
            len,
        })
    }

    fn mask(
        &self,
        rows: i64,
        width: i64,
        rng: &mut ChaCha8Rng,
    ) -> std::result::Result<Tensor, TchError> {
        let n = (rows * width) as usize;
        let offset = rng.gen_range(0..=self.len - n.min(self.len));
        self.bank
            .f_narrow(0, offset as i64, n as i64)?
            .f_view([rows, width])
    }
}
