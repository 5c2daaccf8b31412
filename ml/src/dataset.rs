//! Tabular datasets: CSV parsing with limits, column typing and schemas.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// Size limits applied while reading a CSV, so one upload cannot exhaust a
/// worker's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted input, in bytes (default 64 MiB).
    pub max_bytes: usize,
    /// Largest number of data rows, header excluded (default 1,000,000).
    pub max_rows: usize,
    /// Largest number of columns (default 1,000).
    pub max_columns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            max_rows: 1_000_000,
            max_columns: 1_000,
        }
    }
}

/// Whether a column holds numbers or categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

/// The values of one column; missing values are `NaN` or `None`.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<String>>),
}

impl ColumnData {
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnData::Numeric(_) => ColumnKind::Numeric,
            ColumnData::Categorical(_) => ColumnKind::Categorical,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the value at `row` is missing.
    pub fn is_missing(&self, row: usize) -> bool {
        match self {
            ColumnData::Numeric(v) => v.get(row).is_none_or(|x| x.is_nan()),
            ColumnData::Categorical(v) => v.get(row).is_none_or(|x| x.is_none()),
        }
    }

    fn take(&self, rows: &[usize]) -> ColumnData {
        match self {
            ColumnData::Numeric(v) => ColumnData::Numeric(
                rows.iter()
                    .map(|&r| v.get(r).copied().unwrap_or(f64::NAN))
                    .collect(),
            ),
            ColumnData::Categorical(v) => {
                ColumnData::Categorical(rows.iter().map(|&r| v.get(r).cloned().flatten()).collect())
            }
        }
    }
}

/// One named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// A table of equally long, typed columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub columns: Vec<Column>,
}

/// Whether a raw CSV cell means "no value". Kept in one place so CSV parsing
/// and any other text input agree.
pub fn is_missing_token(cell: &str) -> bool {
    let t = cell.trim();
    t.is_empty()
        || ["na", "nan", "null", "?"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
}

impl Dataset {
    /// Parses a CSV with a header row (unique, non-empty names) and at least
    /// one data row, every row as wide as the header.
    ///
    /// A column is numeric when every non-missing cell parses as a finite
    /// number (missing cells become `NaN`); a non-finite number such as
    /// `inf` in such a column is an error. Any other column is categorical.
    /// Missing cells are empty, `NA`, `NaN`, `null` or `?` (any case).
    ///
    /// Errors name the line (1-based, the header is line 1) and column.
    pub fn from_csv(bytes: &[u8], limits: &Limits) -> Result<Dataset> {
        if bytes.len() > limits.max_bytes {
            return Err(invalid(format!(
                "CSV is {} bytes, over the limit max_bytes = {}",
                bytes.len(),
                limits.max_bytes
            )));
        }
        // Spreadsheet exports often start with a UTF-8 byte order mark, which
        // would otherwise become part of the first column's name.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(invalid("CSV is empty; a header row is required"));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(bytes);
        let header = reader
            .headers()
            .map_err(|e| invalid(format!("CSV header (line 1): {e}")))?
            .clone();
        let names = validate_header(&header, limits)?;
        let width = names.len();

        let mut cells: Vec<Vec<String>> = vec![Vec::new(); width];
        let mut lines: Vec<u64> = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                invalid(format!("CSV line {line}: {e}"))
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            // A blank line at the end of a file is a formatting accident, not
            // a row of missing values.
            if record.len() == 1 && width > 1 && record[0].trim().is_empty() {
                continue;
            }
            if record.len() != width {
                return Err(invalid(format!(
                    "line {line}: expected {width} fields (as in the header), found {}",
                    record.len()
                )));
            }
            if lines.len() >= limits.max_rows {
                return Err(invalid(format!(
                    "CSV has more than max_rows = {} data rows",
                    limits.max_rows
                )));
            }
            lines.push(line);
            for (col, cell) in cells.iter_mut().zip(record.iter()) {
                col.push(cell.to_string());
            }
        }
        if lines.is_empty() {
            return Err(invalid("CSV has a header but no data rows"));
        }

        let columns = names
            .into_iter()
            .zip(cells)
            .map(|(name, raw)| {
                let data = type_column(&name, &raw, &lines)?;
                Ok(Column { name, data })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Dataset { columns })
    }

    /// Number of rows (0 for a dataset without columns).
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    /// The column with this exact name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names, in order.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// A new dataset with the given rows, in the given order (rows may
    /// repeat). An out-of-range index yields a missing value rather than a
    /// panic; callers pass indices they derived from `n_rows()`.
    pub fn take_rows(&self, rows: &[usize]) -> Dataset {
        Dataset {
            columns: self
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    data: c.data.take(rows),
                })
                .collect(),
        }
    }
}

fn validate_header(header: &csv::StringRecord, limits: &Limits) -> Result<Vec<String>> {
    if header.len() > limits.max_columns {
        return Err(invalid(format!(
            "CSV has {} columns, over the limit max_columns = {}",
            header.len(),
            limits.max_columns
        )));
    }
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = raw.trim().to_string();
        if name.is_empty() {
            return Err(invalid(format!(
                "CSV header (line 1): column {} has an empty name",
                i + 1
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(format!(
                "CSV header (line 1): duplicate column name '{name}'"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// Numeric if every non-missing cell is a number; a non-finite number in an
/// otherwise numeric column is rejected rather than silently made categorical,
/// because it is almost always an export bug.
fn type_column(name: &str, raw: &[String], lines: &[u64]) -> Result<ColumnData> {
    let mut values = Vec::with_capacity(raw.len());
    let mut non_finite: Option<usize> = None;
    for (i, cell) in raw.iter().enumerate() {
        if is_missing_token(cell) {
            values.push(f64::NAN);
            continue;
        }
        match cell.trim().parse::<f64>() {
            Ok(x) => {
                if !x.is_finite() && non_finite.is_none() {
                    non_finite = Some(i);
                }
                values.push(x);
            }
            Err(_) => {
                return Ok(ColumnData::Categorical(
                    raw.iter()
                        .map(|c| (!is_missing_token(c)).then(|| c.trim().to_string()))
                        .collect(),
                ));
            }
        }
    }
    if let Some(i) = non_finite {
        let line = lines.get(i).copied().unwrap_or(0);
        return Err(invalid(format!(
            "line {line}, column '{name}': non-finite value '{}' in a numeric column",
            raw[i].trim()
        )));
    }
    Ok(ColumnData::Numeric(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LearnError;

    fn parse(text: &str) -> Result<Dataset> {
        Dataset::from_csv(text.as_bytes(), &Limits::default())
    }

    fn message(r: Result<Dataset>) -> String {
        match r {
            Err(LearnError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_header_only_are_invalid() {
        assert!(message(parse("")).contains("empty"));
        assert!(message(parse("  \n")).contains("empty"));
        assert!(message(parse("a,b\n")).contains("no data rows"));
    }

    #[test]
    fn ragged_row_names_its_line() {
        let m = message(parse("a,b\n1,2\n3\n4,5\n"));
        assert!(m.contains("line 3"), "{m}");
        assert!(m.contains("expected 2 fields"), "{m}");
    }

    #[test]
    fn duplicate_and_empty_header_names() {
        assert!(message(parse("a,b,a\n1,2,3\n")).contains("duplicate column name 'a'"));
        assert!(message(parse("a,,c\n1,2,3\n")).contains("column 2 has an empty name"));
    }

    #[test]
    fn missing_tokens_become_nan_in_numeric_columns() {
        let d = parse("x,y\n1,a\nNA,b\nnan,\n?,c\nNULL,d\n,e\n2.5,f\n").unwrap_or_default();
        let ColumnData::Numeric(x) = &d.columns[0].data else {
            panic!("x should be numeric")
        };
        assert_eq!(x.len(), 7);
        assert_eq!(x.iter().filter(|v| v.is_nan()).count(), 5);
        assert_eq!(x[6], 2.5);
        let ColumnData::Categorical(y) = &d.columns[1].data else {
            panic!("y should be categorical")
        };
        assert_eq!(y[2], None);
        let schema = d.schema();
        assert_eq!(schema.columns[0].missing, 5);
        assert_eq!(schema.columns[1].distinct, Some(6));
        let json = serde_json::to_value(&schema).unwrap_or_default();
        assert_eq!(json[0]["kind"], "numeric");
        assert_eq!(json[1]["kind"], "categorical");
    }

    #[test]
    fn infinity_in_numeric_column_is_invalid() {
        let m = message(parse("x,z\n1,2\ninf,3\n"));
        assert!(m.contains("line 3, column 'x'"), "{m}");
        // In a text column "inf" is just a category.
        let d = parse("x\nfoo\ninf\n").unwrap_or_default();
        assert_eq!(d.columns[0].data.kind(), ColumnKind::Categorical);
    }

    #[test]
    fn mixed_text_makes_a_column_categorical() {
        let d = parse("id,v\n1,3\nA2,4\n").unwrap_or_default();
        assert_eq!(d.columns[0].data.kind(), ColumnKind::Categorical);
        assert_eq!(d.columns[1].data.kind(), ColumnKind::Numeric);
        assert_eq!(d.n_rows(), 2);
        assert!(d.column("v").is_some());
        assert!(d.column("w").is_none());
    }

    #[test]
    fn limits_are_enforced_and_named() {
        let text = "a,b\n1,2\n3,4\n5,6\n";
        let small = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            message(Dataset::from_csv(text.as_bytes(), &l))
        };
        assert!(small(|l| l.max_bytes = 5).contains("max_bytes"));
        assert!(small(|l| l.max_rows = 2).contains("max_rows"));
        assert!(small(|l| l.max_columns = 1).contains("max_columns"));
        let l = Limits {
            max_rows: 3,
            ..Limits::default()
        };
        assert!(Dataset::from_csv(text.as_bytes(), &l).is_ok());
    }

    #[test]
    fn bom_trailing_blank_line_and_take_rows() {
        let d = Dataset::from_csv(b"\xEF\xBB\xBFa,b\n1,x\n2,y\n\n", &Limits::default())
            .unwrap_or_default();
        assert_eq!(d.column_names(), vec!["a", "b"]);
        let t = d.take_rows(&[1, 1, 0]);
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![2.0, 2.0, 1.0]));
        assert_eq!(t.n_rows(), 3);
    }

    #[test]
    fn invalid_utf8_is_reported_with_a_line() {
        let m = message(Dataset::from_csv(b"a\n1\n\xff\xfe\n", &Limits::default()));
        assert!(m.contains("line"), "{m}");
    }
}
