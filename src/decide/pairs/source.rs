//! Where the pair search reads its vectors from: a sequential scan in fixed chunks of rows,
//! repeated once per pass, and a gather of chosen rows (one batch of partitions' members), so
//! that memory holds one chunk or one batch at a time and never the whole input. Implemented
//! for a matrix already in memory (`run`'s embeddings) here, and for .npy (memory-mapped
//! windows) and Parquet files in `npy` and `parquet_input`. Sources give rows as stored; the
//! search normalises them when asked.

use super::PairsError;

/// Rows per chunk of a scan. Chunks start at multiples of it, whatever the source's own
/// blocks, so every product runs on the same blocks on every run (a multiple of the 256-row
/// blocks of `kmeans` and `within`).
pub const CHUNK_ROWS: usize = 8192;

/// What a scan calls with each chunk: its first row's number and its values.
pub type ChunkVisit<'a> = &'a mut dyn FnMut(u64, &[f32]) -> Result<(), PairsError>;

/// What a gather calls with each chosen row: its index in the list of rows, and its values.
pub type RowVisit<'a> = &'a mut dyn FnMut(usize, &[f32]) -> Result<(), PairsError>;

/// A matrix of `rows() × dim()` f32 values read front to back.
pub trait EmbeddingSource: Sync {
    fn rows(&self) -> u64;
    fn dim(&self) -> usize;
    /// Calls `visit(first_row, values)` for consecutive chunks of [`CHUNK_ROWS`] rows (the last
    /// one shorter), in order, `values` row-major.
    fn scan(&self, visit: ChunkVisit<'_>) -> Result<(), PairsError>;

    /// [`EmbeddingSource::scan`] over the rows `rows` only (`rows.start` a multiple of
    /// [`CHUNK_ROWS`], so the chunks are those of a whole scan). Reads the range by a gather: a
    /// source that reads rows where they lie reads only these.
    fn scan_rows(
        &self,
        rows: std::ops::Range<u64>,
        visit: ChunkVisit<'_>,
    ) -> Result<(), PairsError> {
        let dim = self.dim();
        let end = rows.end.min(self.rows());
        if rows.start >= end || dim == 0 {
            return Ok(());
        }
        debug_assert_eq!(rows.start % CHUNK_ROWS as u64, 0);
        let numbers: Vec<u32> = (rows.start as u32..end as u32).collect();
        let mut chunk = Vec::with_capacity(CHUNK_ROWS * dim);
        let mut first = rows.start;
        self.gather(&numbers, &mut |_, values| {
            chunk.extend_from_slice(values);
            if chunk.len() == CHUNK_ROWS * dim {
                visit(first, &chunk)?;
                first += CHUNK_ROWS as u64;
                chunk.clear();
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            visit(first, &chunk)?;
        }
        Ok(())
    }

    /// Calls `visit(i, values)` for each `rows[i]` (ascending row numbers), in order. The
    /// default reads the whole input once and picks the rows; sources that can read a row
    /// where it lies (memory, .npy) read only those.
    fn gather(&self, rows: &[u32], visit: RowVisit<'_>) -> Result<(), PairsError> {
        let dim = self.dim();
        let mut next = 0usize;
        self.scan(&mut |first, values| {
            let end = first + (values.len() / dim.max(1)) as u64;
            while next < rows.len() && u64::from(rows[next]) < end {
                let local = (u64::from(rows[next]) - first) as usize;
                visit(next, &values[local * dim..(local + 1) * dim])?;
                next += 1;
            }
            Ok(())
        })
    }
}

/// Rows already in memory, row-major.
pub struct VectorsInMemory<'a> {
    pub vectors: &'a [f32],
    pub dim: usize,
}

impl EmbeddingSource for VectorsInMemory<'_> {
    fn rows(&self) -> u64 {
        self.vectors.len().checked_div(self.dim).unwrap_or(0) as u64
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn scan(&self, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        if self.dim == 0 {
            return Ok(());
        }
        let whole = &self.vectors[..self.rows() as usize * self.dim];
        for (i, chunk) in whole.chunks(CHUNK_ROWS * self.dim).enumerate() {
            visit((i * CHUNK_ROWS) as u64, chunk)?;
        }
        Ok(())
    }

    fn gather(&self, rows: &[u32], visit: RowVisit<'_>) -> Result<(), PairsError> {
        let dim = self.dim;
        for (i, &row) in rows.iter().enumerate() {
            let at = row as usize * dim;
            visit(i, &self.vectors[at..at + dim])?;
        }
        Ok(())
    }
}

/// Collects rows arriving in blocks of any size into chunks of [`CHUNK_ROWS`].
pub(crate) struct Rechunker {
    dim: usize,
    buffer: Vec<f32>,
    next_row: u64,
}

impl Rechunker {
    pub fn new(dim: usize) -> Rechunker {
        Rechunker {
            dim,
            buffer: Vec::with_capacity(CHUNK_ROWS * dim),
            next_row: 0,
        }
    }

    /// Adds whole rows, visiting every chunk that fills up.
    pub fn push(&mut self, mut values: &[f32], visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        let full = CHUNK_ROWS * self.dim;
        while !values.is_empty() {
            let take = (full - self.buffer.len()).min(values.len());
            self.buffer.extend_from_slice(&values[..take]);
            values = &values[take..];
            if self.buffer.len() == full {
                self.flush(visit)?;
            }
        }
        Ok(())
    }

    /// Visits what is left.
    pub fn finish(mut self, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        if !self.buffer.is_empty() {
            self.flush(visit)?;
        }
        Ok(())
    }

    fn flush(&mut self, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        visit(self.next_row, &self.buffer)?;
        self.next_row += (self.buffer.len() / self.dim) as u64;
        self.buffer.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechunker_cuts_at_fixed_rows() {
        let dim = 2;
        let mut chunker = Rechunker::new(dim);
        let mut seen = Vec::new();
        let mut visit = |first: u64, values: &[f32]| {
            seen.push((first, values.len() / dim, values[0]));
            Ok(())
        };
        let rows = CHUNK_ROWS * 2 + 5;
        let values: Vec<f32> = (0..rows * dim).map(|i| (i / dim) as f32).collect();
        for block in values.chunks(7 * dim) {
            chunker.push(block, &mut visit).unwrap();
        }
        chunker.finish(&mut visit).unwrap();
        assert_eq!(
            seen,
            [
                (0, CHUNK_ROWS, 0.0),
                (CHUNK_ROWS as u64, CHUNK_ROWS, CHUNK_ROWS as f32),
                (2 * CHUNK_ROWS as u64, 5, (2 * CHUNK_ROWS) as f32)
            ]
        );
    }
}
