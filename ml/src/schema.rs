//! What a data set's columns look like, summarised once at upload and
//! stored with the data set: shown to users before they pick a target, and
//! enough to tell the task an experiment on a target learns without
//! reading and parsing the whole CSV again.

use serde::{Deserialize, Serialize};

use crate::dataset::{ColumnData, ColumnKind, Dataset};
use crate::error::Result;
use crate::task::{check_task, column_task, unknown_target, Task};

/// Most classes a column's summary keeps for its task; a categorical column
/// with more distinct values is summarised without one, and an experiment
/// predicting it reads the data set to learn its classes.
pub const MAX_SUMMARY_CLASSES: usize = 100;

/// Summary of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub kind: ColumnKind,
    /// Number of missing cells.
    pub missing: usize,
    /// Number of distinct non-missing values (categorical columns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<usize>,
    /// The task a model predicting this column learns (see
    /// [`crate::task::infer_task`]). Absent from summaries stored before it
    /// existed and for columns of more than [`MAX_SUMMARY_CLASSES`] classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// The columns of a dataset, in order; serialised as a plain list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetSchema {
    pub columns: Vec<ColumnSchema>,
}

impl Dataset {
    /// Kind, missing count, distinct count (categories) and the task as a
    /// target, per column.
    pub fn schema(&self) -> DatasetSchema {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                // A categorical column's task lists its distinct values as
                // classes, so its distinct count is read off the task.
                let task = column_task(&c.data);
                let distinct = match &c.data {
                    ColumnData::Numeric(_) => None,
                    ColumnData::Categorical(_) => Some(task.n_classes()),
                };
                ColumnSchema {
                    name: c.name.clone(),
                    kind: c.data.kind(),
                    missing: (0..c.data.len()).filter(|&r| c.data.is_missing(r)).count(),
                    distinct,
                    task: Some(task).filter(|t| t.n_classes() <= MAX_SUMMARY_CLASSES),
                }
            })
            .collect();
        DatasetSchema { columns }
    }
}

impl DatasetSchema {
    /// The task of an experiment predicting `target` in a data set of
    /// `rows` rows, checked as [`crate::task::infer_task`] checks it; `None`
    /// when the summary does not tell (stored before it kept tasks, too
    /// many classes, or no columns summarised at all), and the data set
    /// must be read instead.
    pub fn target_task(&self, rows: u64, target: &str) -> Option<Result<Task>> {
        if self.columns.is_empty() {
            return None;
        }
        let Some(column) = self.columns.iter().find(|c| c.name == target) else {
            let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            return Some(Err(unknown_target(target, &names)));
        };
        let task = column.task.clone()?;
        let usable = usize::try_from(rows).ok()?.saturating_sub(column.missing);
        Some(check_task(target, task, usable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Limits;

    fn csv(rows: &[&str]) -> Dataset {
        let text = format!("{}\n", rows.join("\n"));
        Dataset::from_csv(text.as_bytes(), &Limits::default()).unwrap()
    }

    /// The summary's answer against a full read's, for every column.
    fn agree(data: &Dataset) {
        let schema = data.schema();
        let back: DatasetSchema =
            serde_json::from_value(serde_json::to_value(&schema).unwrap()).unwrap();
        for name in data.column_names().into_iter().chain(["nope"]) {
            let full = crate::task::infer_task(data, name).map_err(|e| e.to_string());
            match back.target_task(data.n_rows() as u64, name) {
                Some(summary) => assert_eq!(summary.map_err(|e| e.to_string()), full, "{name}"),
                None => assert!(
                    full.as_ref()
                        .map_or(true, |t| t.n_classes() > MAX_SUMMARY_CLASSES),
                    "{name}: only a large class list may be left to a full read"
                ),
            }
        }
    }

    #[test]
    fn the_summary_tells_the_same_task_as_a_full_read() {
        let mut rows = vec!["grade,score,kind,flag,tiny,id".to_string()];
        for i in 0..30 {
            let flag = if i == 0 { "" } else { "x" };
            let tiny = if i < 5 { "1" } else { "" };
            rows.push(format!(
                "{},{}.5,{},{flag},{tiny},id{i}",
                i % 4,
                i,
                ["a", "b", "c"][i % 3]
            ));
        }
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        agree(&csv(&rows));
    }

    #[test]
    fn a_column_of_many_classes_is_left_to_a_full_read() {
        let mut rows = vec!["id,y".to_string()];
        for i in 0..=MAX_SUMMARY_CLASSES {
            rows.push(format!("s{i},{i}"));
        }
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let data = csv(&rows);
        let schema = data.schema();
        assert_eq!(
            schema
                .target_task(data.n_rows() as u64, "id")
                .map(|r| r.is_ok()),
            None
        );
        assert_eq!(
            schema
                .target_task(data.n_rows() as u64, "y")
                .unwrap()
                .unwrap(),
            Task::Regression
        );
        agree(&data);
    }

    #[test]
    fn a_summary_stored_before_tasks_is_left_to_a_full_read() {
        let old: DatasetSchema = serde_json::from_value(serde_json::json!([
            {"name": "y", "kind": "numeric", "missing": 0}
        ]))
        .unwrap();
        assert!(old.target_task(40, "y").is_none());
        let err = old.target_task(40, "x").unwrap().unwrap_err().to_string();
        assert!(
            err.contains("unknown target column 'x'; available columns: y"),
            "{err}"
        );
    }
}
