//! Learning task inference (regression or classification) and target encoding.
//!
//! Rows whose target is missing are dropped from training and evaluation:
//! there is nothing to learn from them, and imputing a target would invent
//! labels. [`encode_target`] returns the rows that remain.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dataset::{ColumnData, Dataset};
use crate::error::{invalid, Result};

/// Numeric targets with at most this many distinct integer values are
/// treated as class labels (e.g. 0/1 outcomes, 1..5 grades).
pub const MAX_INTEGER_CLASSES: usize = 10;

/// Fewest rows with a known target that a model may be trained on.
pub const MIN_TRAINING_ROWS: usize = 10;

/// What the model predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Task {
    Regression,
    /// `classes` are in sorted order (numeric order for numeric labels); the
    /// class index used everywhere is the position in this list, and the
    /// binary positive class is `classes[1]`.
    Classification {
        classes: Vec<String>,
    },
}

impl Task {
    /// Width of one prediction: 1 for regression, one probability per class.
    pub fn output_width(&self) -> usize {
        match self {
            Task::Regression => 1,
            Task::Classification { classes } => classes.len(),
        }
    }

    pub fn is_classification(&self) -> bool {
        matches!(self, Task::Classification { .. })
    }

    /// Number of classes, 0 for regression.
    pub fn n_classes(&self) -> usize {
        match self {
            Task::Regression => 0,
            Task::Classification { classes } => classes.len(),
        }
    }
}

/// Targets of the usable rows: `rows[i]` is a dataset row and `y[i]` its
/// target (the value for regression, the class index for classification).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTarget {
    pub rows: Vec<usize>,
    pub y: Vec<f64>,
}

fn target_column<'a>(data: &'a Dataset, target: &str) -> Result<&'a ColumnData> {
    data.column(target)
        .map(|c| &c.data)
        .ok_or_else(|| unknown_target(target, &data.column_names()))
}

pub(crate) fn unknown_target(target: &str, columns: &[&str]) -> crate::LearnError {
    invalid(format!(
        "unknown target column '{target}'; available columns: {}",
        columns.join(", ")
    ))
}

/// Text form of an integer-valued class label (`1.0` -> "1").
fn integer_label(x: f64) -> String {
    format!("{}", x as i64)
}

/// Infers the task from the target column (see [`MAX_INTEGER_CLASSES`]).
pub fn infer_task(data: &Dataset, target: &str) -> Result<Task> {
    let column = target_column(data, target)?;
    let usable = (0..column.len()).filter(|&r| !column.is_missing(r)).count();
    check_task(target, column_task(column), usable)
}

/// The task a model predicting `column` learns: classification over the
/// sorted distinct values of a categorical column, or of a numeric column
/// of at most [`MAX_INTEGER_CLASSES`] distinct integers; else regression.
pub(crate) fn column_task(column: &ColumnData) -> Task {
    match column {
        ColumnData::Categorical(values) => {
            let classes: BTreeSet<&str> = values.iter().flatten().map(String::as_str).collect();
            Task::Classification {
                classes: classes.into_iter().map(str::to_string).collect(),
            }
        }
        ColumnData::Numeric(values) => {
            let known: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
            let all_integer = known.iter().all(|x| x.fract() == 0.0 && x.abs() < 9.0e15);
            let mut distinct: Vec<f64> = Vec::new();
            if all_integer {
                let mut seen = BTreeMap::new();
                for &x in &known {
                    seen.insert(x as i64, ());
                    if seen.len() > MAX_INTEGER_CLASSES {
                        break;
                    }
                }
                distinct = seen.keys().map(|&k| k as f64).collect();
            }
            if all_integer && !known.is_empty() && distinct.len() <= MAX_INTEGER_CLASSES {
                Task::Classification {
                    classes: distinct.into_iter().map(integer_label).collect(),
                }
            } else {
                Task::Regression
            }
        }
    }
}

/// `task` for target column `target`, if a model can learn it from the
/// `usable` rows that have a target value.
pub(crate) fn check_task(target: &str, task: Task, usable: usize) -> Result<Task> {
    if usable < MIN_TRAINING_ROWS {
        return Err(invalid(format!(
            "target '{target}' has {usable} rows with a value; at least {MIN_TRAINING_ROWS} are needed"
        )));
    }
    if let Task::Classification { classes } = &task {
        if classes.len() < 2 {
            return Err(invalid(format!(
                "target '{target}' has {} distinct class(es); classification needs at least 2",
                classes.len()
            )));
        }
    }
    Ok(task)
}

/// Extracts the target of every row that has one, encoded for `task`.
pub fn encode_target(data: &Dataset, target: &str, task: &Task) -> Result<EncodedTarget> {
    let column = target_column(data, target)?;
    let mut rows = Vec::new();
    let mut y = Vec::new();
    match (task, column) {
        (Task::Regression, ColumnData::Numeric(values)) => {
            for (r, &v) in values.iter().enumerate() {
                if !v.is_nan() {
                    rows.push(r);
                    y.push(v);
                }
            }
        }
        (Task::Regression, ColumnData::Categorical(_)) => {
            return Err(invalid(format!(
                "target '{target}' is categorical; regression needs a numeric target"
            )));
        }
        (Task::Classification { classes }, data) => {
            let index: BTreeMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            for r in 0..data.len() {
                let label = match data {
                    ColumnData::Numeric(v) if !v[r].is_nan() => integer_label(v[r]),
                    ColumnData::Categorical(v) => match &v[r] {
                        Some(s) => s.clone(),
                        None => continue,
                    },
                    ColumnData::Numeric(_) => continue,
                };
                let class = index.get(label.as_str()).ok_or_else(|| {
                    invalid(format!(
                        "row {}, target '{target}': value '{label}' is not one of the classes {}",
                        r + 1,
                        classes.join(", ")
                    ))
                })?;
                rows.push(r);
                y.push(*class as f64);
            }
        }
    }
    Ok(EncodedTarget { rows, y })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Column, Limits};
    use crate::LearnError;

    fn numeric(values: Vec<f64>) -> Dataset {
        Dataset {
            columns: vec![Column {
                name: "t".into(),
                data: ColumnData::Numeric(values),
            }],
        }
    }

    #[test]
    fn categorical_target_is_classification_with_sorted_classes() {
        let csv = "x,t\n".to_string() + &"1,b\n2,a\n".repeat(6);
        let d = Dataset::from_csv(csv.as_bytes(), &Limits::default()).unwrap_or_default();
        let task = infer_task(&d, "t").ok();
        assert_eq!(
            task,
            Some(Task::Classification {
                classes: vec!["a".into(), "b".into()]
            })
        );
        let enc = encode_target(&d, "t", &task.unwrap_or(Task::Regression)).ok();
        assert_eq!(enc.map(|e| e.y[..2].to_vec()), Some(vec![1.0, 0.0]));
    }

    #[test]
    fn few_integers_are_classes_many_values_are_regression() {
        let classes = numeric((0..30).map(|i| f64::from(i % 3 * 5)).collect());
        match infer_task(&classes, "t") {
            Ok(Task::Classification { classes }) => assert_eq!(classes, vec!["0", "5", "10"]),
            other => panic!("{other:?}"),
        }
        let reg = numeric((0..30).map(f64::from).collect());
        assert!(matches!(infer_task(&reg, "t"), Ok(Task::Regression)));
        let reg = numeric((0..30).map(|i| f64::from(i % 2) + 0.5).collect());
        assert!(matches!(infer_task(&reg, "t"), Ok(Task::Regression)));
    }

    #[test]
    fn missing_targets_are_dropped() {
        let mut v: Vec<f64> = (0..12).map(f64::from).collect();
        v[3] = f64::NAN;
        let d = numeric(v);
        let enc = encode_target(&d, "t", &Task::Regression).ok();
        assert_eq!(enc.as_ref().map(|e| e.rows.len()), Some(11));
        assert_eq!(enc.map(|e| e.rows.contains(&3)), Some(false));
    }

    #[test]
    fn bad_targets_are_invalid() {
        let d = numeric((0..30).map(|_| 1.0).collect());
        assert!(
            matches!(infer_task(&d, "t"), Err(LearnError::Invalid(m)) if m.contains("at least 2"))
        );
        let d = numeric((0..5).map(f64::from).collect());
        assert!(
            matches!(infer_task(&d, "t"), Err(LearnError::Invalid(m)) if m.contains("at least 10"))
        );
        assert!(
            matches!(infer_task(&d, "nope"), Err(LearnError::Invalid(m)) if m.contains("available columns: t"))
        );
    }
}
