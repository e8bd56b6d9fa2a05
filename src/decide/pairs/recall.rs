//! An estimate of the pair search's recall: a seeded sample of rows is searched exhaustively
//! against every row (one pass over the input, blocked products), and the share of their
//! exact pairs that the search reported is the recall. Costs sample × rows × dim, a second or
//! two for 200 rows of a million. It does not search for pairs itself.

use serde::Serialize;

use super::source::EmbeddingSource;
use super::tile::dot_products;
use super::{mix, CosinePair, PairsError};
use crate::vector::{cosine, normalise};

#[derive(Debug, Clone, Serialize)]
pub struct RecallEstimate {
    pub sampled_rows: usize,
    /// Pairs at or above the threshold that involve a sampled row, by exhaustive search.
    pub exact_pairs: usize,
    /// How many of them the search reported.
    pub found_pairs: usize,
    /// found / exact (1 when there are none).
    pub recall: f64,
}

/// Estimates the recall of `found` (sorted by (a, b)) over about `sample` rows of `source`.
pub fn estimate_recall(
    source: &dyn EmbeddingSource,
    normalise_rows: bool,
    min_cosine: f32,
    found: &[CosinePair],
    sample: usize,
    seed: u64,
) -> Result<RecallEstimate, PairsError> {
    let (rows, dim) = (source.rows(), source.dim());
    let chance = (sample as f64 / rows.max(1) as f64).min(1.0);
    let limit = (chance * u64::MAX as f64) as u64;
    let chosen = |row: u64| chance >= 1.0 || mix(seed ^ 0x002E_CA11 ^ row) <= limit;
    let mut query_rows = Vec::new();
    let mut queries = Vec::new();
    let mut scratch = Vec::new();
    let prepare = |values: &[f32], scratch: &mut Vec<f32>| {
        scratch.clear();
        scratch.extend_from_slice(values);
        if normalise_rows {
            normalise(scratch, dim);
        }
    };
    source.scan(&mut |first, values| {
        prepare(values, &mut scratch);
        for (i, row) in scratch.chunks_exact(dim).enumerate() {
            if chosen(first + i as u64) {
                query_rows.push(first + i as u64);
                queries.extend_from_slice(row);
            }
        }
        Ok(())
    })?;
    let q = query_rows.len();
    let mut exact = Vec::new();
    let mut tile = Vec::new();
    source.scan(&mut |first, values| {
        prepare(values, &mut scratch);
        let n = scratch.len() / dim;
        tile.resize(q * n, 0.0);
        dot_products(&queries, &scratch, dim, &mut tile);
        for i in 0..q {
            for j in 0..n {
                let row = first + j as u64;
                if row != query_rows[i] && tile[i * n + j] >= min_cosine - 1e-4 {
                    let c = cosine(
                        &queries[i * dim..(i + 1) * dim],
                        &scratch[j * dim..(j + 1) * dim],
                    );
                    if c >= min_cosine {
                        exact.push((query_rows[i].min(row), query_rows[i].max(row)));
                    }
                }
            }
        }
        Ok(())
    })?;
    let found_pairs = exact
        .iter()
        .filter(|&&(a, b)| found.binary_search_by_key(&(a, b), |p| (p.a, p.b)).is_ok())
        .count();
    Ok(RecallEstimate {
        sampled_rows: q,
        exact_pairs: exact.len(),
        found_pairs,
        recall: if exact.is_empty() {
            1.0
        } else {
            found_pairs as f64 / exact.len() as f64
        },
    })
}
