//! LightGBM, driven one boosting round at a time.
//!
//! [`Booster`] owns its training and validation [`Dataset`]s, because
//! LightGBM's booster keeps raw pointers into them: owning them makes "freed
//! while the booster lives" impossible. Handles are freed on drop.
//!
//! Thread safety: LightGBM guards a booster with its own shared mutex, so a
//! booster may move between threads (`Send`); this wrapper takes `&mut self`
//! for every call that changes it, so it is never shared while training.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;

use lightgbm3_sys as sys;

/// A failed LightGBM call, with LightGBM's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("LightGBM: {0}")]
    Library(String),
    #[error("LightGBM input: {0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, Error>;

// The C API's type tags (c_api.h), which bindgen leaves as macros.
const DTYPE_FLOAT32: c_int = 0;
const DTYPE_FLOAT64: c_int = 1;
const PREDICT_RAW_SCORE: c_int = 1;

fn check(code: c_int) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a pointer to a thread-local,
    // NUL-terminated buffer that stays valid until the next call on this
    // thread; it is copied out at once.
    let message = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) }
        .to_string_lossy()
        .into_owned();
    Err(Error::Library(message))
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Input(format!("parameter string contains NUL: {s:?}")))
}

fn dims(data: &[f64], rows: usize, cols: usize) -> Result<(i32, i32)> {
    if rows.checked_mul(cols) != Some(data.len()) || rows == 0 || cols == 0 {
        return Err(Error::Input(format!(
            "{} values do not form a {rows} x {cols} matrix",
            data.len()
        )));
    }
    let r = i32::try_from(rows).map_err(|_| Error::Input(format!("{rows} rows is too many")))?;
    let c = i32::try_from(cols).map_err(|_| Error::Input(format!("{cols} columns is too many")))?;
    Ok((r, c))
}

/// A binned training or validation set.
#[derive(Debug)]
pub struct Dataset {
    handle: sys::DatasetHandle,
    rows: usize,
}

// SAFETY: a dataset handle is a heap object LightGBM does not tie to the
// creating thread; this type exposes no shared mutation.
unsafe impl Send for Dataset {}

impl Dataset {
    /// A data set from a row-major `rows x cols` matrix and one label per
    /// row. `reference` bins a validation set with the training set's bin
    /// boundaries, as LightGBM requires for validation data. `params` are
    /// LightGBM's `key=value` dataset parameters (e.g. `max_bin=255`).
    pub fn from_rows(
        data: &[f64],
        rows: usize,
        cols: usize,
        labels: &[f32],
        params: &str,
        reference: Option<&Dataset>,
    ) -> Result<Dataset> {
        let (r, c) = dims(data, rows, cols)?;
        if labels.len() != rows {
            return Err(Error::Input(format!(
                "{} labels for {rows} rows",
                labels.len()
            )));
        }
        let params = c_string(params)?;
        let mut handle: sys::DatasetHandle = ptr::null_mut();
        // SAFETY: `data` holds rows*cols f64 values (checked above) and
        // outlives the call, which copies it into bins; `reference` is a live
        // dataset or null; `handle` is a valid out pointer.
        check(unsafe {
            sys::LGBM_DatasetCreateFromMat(
                data.as_ptr() as *const c_void,
                DTYPE_FLOAT64,
                r,
                c,
                1,
                params.as_ptr(),
                reference.map_or(ptr::null_mut(), |d| d.handle),
                &mut handle,
            )
        })?;
        let dataset = Dataset { handle, rows };
        let field = c_string("label")?;
        // SAFETY: the handle is live; `labels` holds `rows` f32 values, the
        // count and type LightGBM expects for the label field.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                dataset.handle,
                field.as_ptr(),
                labels.as_ptr() as *const c_void,
                r,
                DTYPE_FLOAT32,
            )
        })?;
        Ok(dataset)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed
        // once; any booster using it is dropped first (it owns the dataset).
        unsafe {
            sys::LGBM_DatasetFree(self.handle);
        }
    }
}

/// A booster being trained, with the data it trains on.
#[derive(Debug)]
pub struct Booster {
    handle: sys::BoosterHandle,
    n_outputs: usize,
    // Kept alive for the booster's raw pointers; dropped after it (see Drop).
    train: Dataset,
    valid: Option<Dataset>,
}

// SAFETY: see the module docs: the booster is not tied to a thread and every
// mutating call takes `&mut self`.
unsafe impl Send for Booster {}

impl Booster {
    /// A booster for `train` with LightGBM's `key=value` parameters
    /// (`objective=binary num_leaves=31 ...`), watching `valid` if given.
    /// `n_outputs` is the score width per row (1, or the class count for
    /// multiclass objectives).
    pub fn new(
        train: Dataset,
        valid: Option<Dataset>,
        params: &str,
        n_outputs: usize,
    ) -> Result<Booster> {
        let params = c_string(params)?;
        let mut handle: sys::BoosterHandle = ptr::null_mut();
        // SAFETY: `train` is a live dataset; `params` is NUL-terminated.
        check(unsafe { sys::LGBM_BoosterCreate(train.handle, params.as_ptr(), &mut handle) })?;
        let booster = Booster {
            handle,
            n_outputs: n_outputs.max(1),
            train,
            valid,
        };
        if let Some(v) = &booster.valid {
            // SAFETY: both handles are live; the booster owns `v` from here.
            check(unsafe { sys::LGBM_BoosterAddValidData(booster.handle, v.handle) })?;
        }
        Ok(booster)
    }

    /// One boosting round (one tree per output). Answers `true` when
    /// LightGBM finished early: no split met the constraints, so further
    /// rounds would add nothing.
    pub fn update(&mut self) -> Result<bool> {
        let mut finished: c_int = 0;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(self.handle, &mut finished) })?;
        Ok(finished != 0)
    }

    /// Rounds trained so far.
    pub fn iterations(&self) -> Result<usize> {
        let mut out: c_int = 0;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::LGBM_BoosterGetCurrentIteration(self.handle, &mut out) })?;
        Ok(usize::try_from(out).unwrap_or(0))
    }

    /// The current model's outputs (probabilities for classification, after
    /// the objective's transform) on the validation set, row-major
    /// `rows x n_outputs`. LightGBM keeps these scores up to date as it
    /// boosts, so this costs a copy, not a prediction pass.
    pub fn valid_outputs(&self) -> Result<Vec<f64>> {
        let Some(valid) = &self.valid else {
            return Err(Error::Input("the booster has no validation set".into()));
        };
        let rows = valid.rows;
        let mut len: i64 = 0;
        // SAFETY: live handle; index 1 is the first validation set, which exists.
        check(unsafe { sys::LGBM_BoosterGetNumPredict(self.handle, 1, &mut len) })?;
        let expected = rows * self.n_outputs;
        if usize::try_from(len).ok() != Some(expected) {
            return Err(Error::Library(format!(
                "validation predictions have {len} values, expected {expected}"
            )));
        }
        let mut class_major = vec![0.0f64; expected];
        // SAFETY: the buffer holds exactly the `len` values LightGBM writes.
        check(unsafe {
            sys::LGBM_BoosterGetPredict(self.handle, 1, &mut len, class_major.as_mut_ptr())
        })?;
        // LightGBM lays scores out class by class; callers want rows.
        let mut out = vec![0.0; expected];
        for k in 0..self.n_outputs {
            for i in 0..rows {
                out[i * self.n_outputs + k] = class_major[k * rows + i];
            }
        }
        Ok(out)
    }

    /// The model in LightGBM's text format (all rounds), which any LightGBM
    /// (Python, R, CLI) loads with `model_str` / `model_file`.
    pub fn model_string(&self) -> Result<String> {
        let mut len: i64 = 0;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let capacity = i64::try_from(buffer.len())
                .map_err(|_| Error::Library("model too large".into()))?;
            // SAFETY: `buffer` has `capacity` bytes; LightGBM writes at most
            // that many and reports the size it needs in `len`.
            check(unsafe {
                sys::LGBM_BoosterSaveModelToString(
                    self.handle,
                    0,
                    -1,
                    0,
                    capacity,
                    &mut len,
                    buffer.as_mut_ptr() as *mut c_char,
                )
            })?;
            let needed = usize::try_from(len).unwrap_or(0);
            if needed <= buffer.len() {
                // `len` counts the terminating NUL.
                buffer.truncate(needed.saturating_sub(1));
                return String::from_utf8(buffer)
                    .map_err(|_| Error::Library("model text is not UTF-8".into()));
            }
            buffer = vec![0u8; needed];
        }
    }

    /// Rows of the training set.
    pub fn train_rows(&self) -> usize {
        self.train.rows
    }
}

/// A model loaded from LightGBM's text format, as any LightGBM user of the
/// exported model would load it: the reference a converted model is checked
/// against.
#[derive(Debug)]
pub struct Model {
    handle: sys::BoosterHandle,
    n_outputs: usize,
}

// SAFETY: as for `Booster`; a loaded model is only read.
unsafe impl Send for Model {}

impl Model {
    pub fn from_string(text: &str) -> Result<Model> {
        let text =
            CString::new(text).map_err(|_| Error::Input("model text contains NUL".into()))?;
        let mut iterations: c_int = 0;
        let mut handle: sys::BoosterHandle = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated and outlives the call; both out
        // pointers are valid.
        check(unsafe {
            sys::LGBM_BoosterLoadModelFromString(text.as_ptr(), &mut iterations, &mut handle)
        })?;
        let mut model = Model {
            handle,
            n_outputs: 1,
        };
        let mut classes: c_int = 0;
        // SAFETY: live handle, valid out pointer.
        check(unsafe { sys::LGBM_BoosterGetNumClasses(model.handle, &mut classes) })?;
        model.n_outputs = usize::try_from(classes).unwrap_or(1).max(1);
        Ok(model)
    }

    /// Raw scores (margins, before sigmoid or softmax) of a row-major
    /// matrix, row-major `rows x n_outputs`.
    pub fn predict_raw(&self, data: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
        let (r, c) = dims(data, rows, cols)?;
        let expected = rows * self.n_outputs;
        let mut out = vec![0.0f64; expected];
        let mut len: i64 = 0;
        let params = c_string("num_threads=1")?;
        // SAFETY: `data` holds rows*cols f64 (checked); `out` holds the
        // rows*n_outputs values a raw-score prediction writes; the model is
        // live. Iterations 0..-1 means all of them.
        check(unsafe {
            sys::LGBM_BoosterPredictForMat(
                self.handle,
                data.as_ptr() as *const c_void,
                DTYPE_FLOAT64,
                r,
                c,
                1,
                PREDICT_RAW_SCORE,
                0,
                -1,
                params.as_ptr(),
                &mut len,
                out.as_mut_ptr(),
            )
        })?;
        if usize::try_from(len).ok() != Some(expected) {
            return Err(Error::Library(format!(
                "prediction has {len} values, expected {expected}"
            )));
        }
        Ok(out)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterLoadModelFromString and
        // is freed once.
        unsafe {
            sys::LGBM_BoosterFree(self.handle);
        }
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once,
        // before the datasets it points into (fields drop after this).
        unsafe {
            sys::LGBM_BoosterFree(self.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> (Vec<f64>, Vec<f32>) {
        // y = 1 when x0 + x1 > 1, on a deterministic grid.
        let mut x = Vec::with_capacity(n * 2);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let a = (i % 37) as f64 / 37.0;
            let b = (i % 11) as f64 / 11.0 + 0.3 * ((i * 7) % 13) as f64 / 13.0;
            x.extend([a, b]);
            y.push(if a + b > 1.0 { 1.0 } else { 0.0 });
        }
        (x, y)
    }

    #[test]
    fn trains_round_by_round_and_exports_text() {
        let (x, y) = data(400);
        let common = "max_bin=63 verbosity=-1";
        let train = Dataset::from_rows(&x, 400, 2, &y, common, None).unwrap();
        let valid = Dataset::from_rows(&x[..200], 100, 2, &y[..100], common, Some(&train)).unwrap();
        let params = "objective=binary learning_rate=0.3 num_leaves=7 min_data_in_leaf=5 \
                      verbosity=-1 num_threads=1 deterministic=true seed=1";
        let mut b = Booster::new(train, Some(valid), params, 1).unwrap();
        let mut first_error = None;
        let mut last_error = 0.0;
        for _ in 0..20 {
            b.update().unwrap();
            let p = b.valid_outputs().unwrap();
            let error = p
                .iter()
                .zip(&y[..100])
                .filter(|(p, &t)| (**p > 0.5) != (t > 0.5))
                .count() as f64;
            first_error.get_or_insert(error);
            last_error = error;
        }
        assert_eq!(b.iterations().unwrap(), 20);
        assert!(
            last_error <= first_error.unwrap(),
            "{first_error:?} -> {last_error}"
        );
        assert!(last_error <= 5.0, "{last_error} validation errors");
        let text = b.model_string().unwrap();
        assert!(
            text.starts_with("tree\n"),
            "{}",
            &text[..40.min(text.len())]
        );
        assert!(text.contains("Tree=19"));
        let model = Model::from_string(&text).unwrap();
        let raw = model.predict_raw(&x[..20], 10, 2).unwrap();
        assert_eq!(raw.len(), 10);
        assert!(raw.iter().all(|v| v.is_finite()));
        assert!(Model::from_string("not a model").is_err());
    }

    #[test]
    fn bad_shapes_and_params_are_errors_not_crashes() {
        let (x, y) = data(10);
        assert!(matches!(
            Dataset::from_rows(&x, 10, 3, &y, "", None),
            Err(Error::Input(_))
        ));
        assert!(matches!(
            Dataset::from_rows(&x, 10, 2, &y[..5], "", None),
            Err(Error::Input(_))
        ));
        let train = Dataset::from_rows(&x, 10, 2, &y, "verbosity=-1", None).unwrap();
        match Booster::new(train, None, "objective=no_such_objective verbosity=-1", 1) {
            Err(Error::Library(m)) => assert!(m.contains("no_such_objective"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
