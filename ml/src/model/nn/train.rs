//! Training the MLP with libtorch: AdamW on shuffled mini-batches, early
//! stopping on a validation split, and one reported value per epoch.
//!
//! Determinism: libtorch's random generator is process-wide, and a worker
//! trains several trials at once in one process, so training never draws from
//! it. Initial weights (PyTorch's default uniform bounds), batch order and
//! dropout masks all come from a ChaCha stream seeded by the trial seed. The
//! same seed, data and thread count therefore give the same model on CPU,
//! whatever else runs, and CPU and CUDA runs start from the same weights and
//! see the same batches and masks (their float results still differ in the
//! last bits, which training can amplify; see `device_check`).
//!
//! Dropout masks are windows, at random offsets, of one seeded bank of
//! Bernoulli draws kept on the device: a mask costs one multiply, as in
//! PyTorch, and no host-to-device copy per batch. Each unit is still dropped
//! with probability `nn_dropout`; masks of different batches overlap only
//! where their windows do.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{COptimizer, Device, Reduction, TchError, Tensor};

use super::net::{Data, MaskBank, Net};
use super::{NamedTensor, NnKind, NnModel, NnSpec, BATCH_NORM_EPS};
use crate::cv::kfold;
use crate::error::{internal, invalid, LearnError, Result};
use crate::matrix::DenseMatrix;
use crate::metrics::{compute, Direction, Metric};
use crate::model::{check_training_data, FittedModel, NnParams, Step, Trainer, Watch, Watched};
use crate::task::Task;

use super::device::{threads_from_env, NnDevice};

/// Epochs without improvement on the validation split before training stops.
pub const PATIENCE: usize = 10;
/// One row in this many (stratified for classes) validates each epoch.
pub const VALIDATION_FOLDS: usize = 5;
/// Fewest training rows: the validation split needs a few of its own.
pub const MIN_ROWS: usize = 10;
/// Smallest relative change of the watched metric that counts as progress,
/// so a plateau's noise does not keep training alive.
const MIN_IMPROVEMENT: f64 = 1e-4;

fn torch_err(e: TchError) -> LearnError {
    internal(format!("libtorch: {e}"))
}

/// Trains [`NnModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct NnTrainer {
    pub params: NnParams,
    pub seed: u64,
    /// Watched for early stopping and reported per epoch.
    pub metric: Metric,
    pub device: NnDevice,
    /// libtorch's CPU thread pool size; process-wide in libtorch, so every
    /// trainer in a process should agree.
    pub threads: usize,
    /// Off only for benchmarks, which need every epoch to run.
    pub early_stopping: bool,
}

/// What one training did.
#[derive(Debug)]
pub struct TrainReport {
    /// `None` when `on_epoch` stopped training.
    pub model: Option<NnModel>,
    /// The libtorch device it ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// The metric on the validation split after each epoch run.
    pub values: Vec<f64>,
    /// Index into `values` of the epoch whose weights the model keeps.
    pub best_epoch: usize,
    pub train_rows: usize,
    pub validation_rows: usize,
    /// Time spent in mini-batch steps (forward, backward, optimizer), all
    /// epochs together; excludes validation.
    pub train_seconds: f64,
    /// The same, per epoch.
    pub epoch_seconds: Vec<f64>,
    pub validation_seconds: f64,
}

impl NnTrainer {
    /// A trainer on the device and thread count the environment asks for
    /// (`TRACSEQ_TORCH_DEVICE`, `TRACSEQ_TORCH_THREADS`; see [`NnDevice`]).
    pub fn new(params: NnParams, seed: u64, metric: Metric) -> Result<NnTrainer> {
        Ok(NnTrainer {
            params,
            seed,
            metric,
            device: NnDevice::from_env()?,
            threads: threads_from_env()?,
            early_stopping: true,
        })
    }

    /// Trains on `x`, `y`, calling `on_epoch(epoch, value)` after each epoch
    /// with the metric on the validation split; [`Step::Stop`] ends training
    /// without a model.
    pub fn train(
        &self,
        x: &DenseMatrix,
        y: &[f64],
        task: &Task,
        on_epoch: &mut dyn FnMut(u32, f64) -> Step,
    ) -> Result<TrainReport> {
        check_training_data(x, y, task)?;
        if x.rows < MIN_ROWS {
            return Err(invalid(format!(
                "the nn family needs at least {MIN_ROWS} training rows, got {}",
                x.rows
            )));
        }
        let device = self.device.resolve()?;
        if device == Device::Cpu {
            tch::set_num_threads(i32::try_from(self.threads).unwrap_or(1));
        }
        let classes: Option<Vec<usize>> = task
            .is_classification()
            .then(|| y.iter().map(|&c| c as usize).collect());
        // A seed of its own, so the inner split is not the outer CV's folds.
        let split = kfold(
            x.rows,
            VALIDATION_FOLDS,
            self.seed ^ 0x6e6e,
            classes.as_deref(),
        )?;
        let (train_rows, valid_rows) = (&split[0].train, &split[0].valid);
        let spec = self.spec(x.cols, task, train_rows.iter().map(|&i| y[i]));
        let data = Data::new(x, y, &spec, train_rows, valid_rows, device).map_err(torch_err)?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let net = Net::init(&spec, &mut rng, device).map_err(torch_err)?;
        self.run(&spec, net, &data, task, &mut rng, on_epoch)
    }

    fn spec(&self, n_features: usize, task: &Task, y: impl Iterator<Item = f64>) -> NnSpec {
        let (kind, outputs) = match task {
            Task::Regression => (NnKind::Regression, 1),
            Task::Classification { classes } if classes.len() == 2 => (NnKind::Binary, 1),
            Task::Classification { classes } => (NnKind::Multiclass, classes.len()),
        };
        // The network learns the standardised target, so the learning rate
        // means the same for any target scale.
        let (target_mean, target_scale) = if kind == NnKind::Regression {
            let y: Vec<f64> = y.collect();
            let n = y.len() as f64;
            let mean = y.iter().sum::<f64>() / n;
            let std = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            (mean, if std > 1e-12 { std } else { 1.0 })
        } else {
            (0.0, 1.0)
        };
        NnSpec {
            kind,
            n_features,
            hidden: vec![self.params.width; self.params.layers],
            batch_norm: self.params.batch_norm,
            batch_norm_eps: BATCH_NORM_EPS,
            outputs,
            target_mean,
            target_scale,
        }
    }

    fn run(
        &self,
        spec: &NnSpec,
        mut net: Net,
        data: &Data,
        task: &Task,
        rng: &mut ChaCha8Rng,
        on_epoch: &mut dyn FnMut(u32, f64) -> Step,
    ) -> Result<TrainReport> {
        let p = &self.params;
        let mut opt = COptimizer::adamw(p.learning_rate, 0.9, 0.999, p.weight_decay, 1e-8, false)
            .map_err(torch_err)?;
        opt.add_parameters(&net.flat, 0).map_err(torch_err)?;
        let batch = p.batch_size.min(data.train_rows);
        let bank = if p.dropout > 0.0 {
            Some(MaskBank::new(p.dropout, batch * p.width, rng, data.device).map_err(torch_err)?)
        } else {
            None
        };
        // A metric that cannot be computed on the split (AUC with one class
        // in it) falls back to one that always can; it is not reported, as
        // pruners compare trials by the study's metric.
        let fallback = if task.is_classification() {
            Metric::LogLoss
        } else {
            Metric::Rmse
        };
        let mut report = TrainReport {
            model: None,
            device: match data.device {
                Device::Cpu => "cpu".to_string(),
                Device::Cuda(i) => format!("cuda:{i}"),
                other => format!("{other:?}").to_lowercase(),
            },
            values: Vec::new(),
            best_epoch: 0,
            train_rows: data.train_rows,
            validation_rows: data.valid_y.len(),
            train_seconds: 0.0,
            epoch_seconds: Vec::new(),
            validation_seconds: 0.0,
        };
        let mut best: Option<(f64, Vec<NamedTensor>)> = None;
        let mut order: Vec<i64> = (0..data.train_rows as i64).collect();
        for epoch in 0..p.epochs {
            let start = Instant::now();
            order.shuffle(rng);
            // Reading the last loss back waits for the device's queued work,
            // so the time covers it (and errors surface here, not as panics).
            self.epoch(&mut net, &mut opt, data, &order, batch, bank.as_ref(), rng)
                .map_err(torch_err)?;
            let seconds = start.elapsed().as_secs_f64();
            report.train_seconds += seconds;
            report.epoch_seconds.push(seconds);

            let start = Instant::now();
            let predictions = net.predict(spec, &data.valid_x).map_err(torch_err)?;
            let (metric, value) = match compute(self.metric, task, &data.valid_y, &predictions) {
                Ok(v) => (self.metric, v),
                Err(_) => (
                    fallback,
                    compute(fallback, task, &data.valid_y, &predictions)?,
                ),
            };
            report.validation_seconds += start.elapsed().as_secs_f64();
            if !value.is_finite() {
                if best.is_some() {
                    break;
                }
                return Err(invalid(format!(
                    "nn training diverged in epoch {epoch} (validation {} is {value}); \
                     lower nn_learning_rate",
                    metric.name()
                )));
            }
            report.values.push(value);
            let improved = best
                .as_ref()
                .is_none_or(|(b, _)| improves(value, *b, metric.direction()));
            if improved {
                best = Some((value, net.snapshot().map_err(torch_err)?));
                report.best_epoch = epoch;
            }
            if metric == self.metric {
                let step = u32::try_from(epoch).map_err(|_| internal("epoch overflows u32"))?;
                if on_epoch(step, value) == Step::Stop {
                    return Ok(report);
                }
            }
            if self.early_stopping && epoch - report.best_epoch >= PATIENCE {
                break;
            }
        }
        let (_, tensors) = best.ok_or_else(|| internal("nn training ran no epoch"))?;
        report.model = Some(NnModel::new(spec.clone(), tensors).map_err(internal)?);
        Ok(report)
    }

    /// One pass over the training rows in `order`; returns the last batch's
    /// loss.
    #[allow(clippy::too_many_arguments)]
    fn epoch(
        &self,
        net: &mut Net,
        opt: &mut COptimizer,
        data: &Data,
        order: &[i64],
        batch: usize,
        bank: Option<&MaskBank>,
        rng: &mut ChaCha8Rng,
    ) -> std::result::Result<Option<f64>, TchError> {
        let perm = Tensor::f_from_slice(order)?.f_to_device(data.device)?;
        let mut last = None;
        for start in (0..order.len()).step_by(batch) {
            let len = batch.min(order.len() - start);
            // A one-row batch has no variance for batch norm to divide by;
            // its row is in other batches in other epochs.
            if self.params.batch_norm && len < 2 {
                continue;
            }
            let idx = perm.f_narrow(0, start as i64, len as i64)?;
            let xb = data.train_x.f_index_select(0, &idx)?;
            let yb = data.train_y.f_index_select(0, &idx)?;
            let out = net.forward(&xb, true, bank, rng)?;
            let loss = match net.kind {
                NnKind::Regression => out.f_mse_loss(&yb, Reduction::Mean)?,
                NnKind::Binary => out.f_binary_cross_entropy_with_logits::<Tensor>(
                    &yb,
                    None,
                    None,
                    Reduction::Mean,
                )?,
                NnKind::Multiclass => {
                    out.f_cross_entropy_loss::<Tensor>(&yb, None, Reduction::Mean, -100, 0.0)?
                }
            };
            opt.zero_grad()?;
            loss.f_backward()?;
            opt.step()?;
            last = Some(loss);
        }
        last.map(|l| l.f_double_value(&[])).transpose()
    }
}

fn improves(value: f64, best: f64, direction: Direction) -> bool {
    let tol = MIN_IMPROVEMENT * best.abs().max(1e-12);
    match direction {
        Direction::Minimize => value < best - tol,
        Direction::Maximize => value > best + tol,
    }
}

impl Trainer for NnTrainer {
    fn fit(&self, x: &DenseMatrix, y: &[f64], task: &Task) -> Result<FittedModel> {
        self.train(x, y, task, &mut |_, _| Step::Continue)?
            .model
            .map(FittedModel::Nn)
            .ok_or_else(|| internal("nn training stopped without being asked to"))
    }

    /// Reports each epoch's metric on the network's own validation split
    /// (see the module docs), not on `watch`'s rows.
    fn fit_watched(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Watch<'_>) -> Watched {
        Ok(self
            .train(x, y, task, watch.report)?
            .model
            .map(FittedModel::Nn))
    }
}
