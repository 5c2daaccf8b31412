//! A small dense row-major matrix: the encoded feature table models train on.

/// Row-major `rows x cols` values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DenseMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl DenseMatrix {
    pub fn zeros(rows: usize, cols: usize) -> DenseMatrix {
        DenseMatrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Builds a matrix from rows, which must all have `cols` values.
    pub fn from_rows(rows: &[Vec<f64>], cols: usize) -> DenseMatrix {
        let mut data = Vec::with_capacity(rows.len() * cols);
        for r in rows {
            data.extend(r.iter().copied().chain(std::iter::repeat(0.0)).take(cols));
        }
        DenseMatrix {
            rows: rows.len(),
            cols,
            data,
        }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Column-major copy, the layout forust's `Matrix` expects.
    pub fn to_column_major(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.data.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                out[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        out
    }

    /// The rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> DenseMatrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        DenseMatrix {
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_conversions() {
        let m = DenseMatrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]], 2);
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.to_column_major(), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(m.select_rows(&[2, 0]).data, vec![5.0, 6.0, 1.0, 2.0]);
    }
}
