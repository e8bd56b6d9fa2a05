//! The CPU's products of the pair search ([`CpuProducts`], the reference): for a batch of
//! gathered partitions, the candidate pairs whose dot product clears a floor just under the
//! threshold, by blocked `gemm` products (`within`), partitions and row blocks in parallel.
//! `gpu::pair_products` implements the same interface (`vector::PairProducts`) on a GPU; which
//! one a search uses is chosen once per run.
//!
//! Only candidates come from the products: every candidate is then checked on the host by the
//! same code (`within::pairs_of_candidates`: the reporting partition, the exact cosine), so any
//! backend that finds the same candidates gives the same pairs and cosines, bit for bit.

use rayon::prelude::*;

use super::within::{candidates_from_block, PAIR_BLOCK};
use crate::vector::{Candidate, PairBlock, PairProducts};

/// How far below the threshold a product may fall and still be checked exactly: products
/// of unit vectors are off by about 1e-6 in float32 (either backend, whatever the order of
/// its additions), so a pair at or above the threshold is always a candidate.
pub const PRODUCT_SLACK: f32 = 1e-4;

/// The reference: blocked products on the CPU, partitions and row blocks in parallel.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuProducts;

impl PairProducts for CpuProducts {
    fn device(&self) -> String {
        "cpu".to_string()
    }

    fn candidates(&self, blocks: &[PairBlock], dim: usize, floor: f32) -> Vec<Vec<Candidate>> {
        // Row blocks that hold a primary row (later blocks pair only replicas with replicas).
        let tasks: Vec<(usize, usize)> = blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| (0..b.primaries.div_ceil(PAIR_BLOCK)).map(move |r| (i, r)))
            .collect();
        let found: Vec<(usize, Vec<Candidate>)> = tasks
            .into_par_iter()
            .map(|(i, r)| (i, candidates_from_block(&blocks[i], r, dim, floor)))
            .collect();
        let mut out: Vec<Vec<Candidate>> = vec![Vec::new(); blocks.len()];
        for (i, candidates) in found {
            out[i].extend(candidates);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{cosine, normalise};

    #[test]
    fn candidates_are_the_pairs_with_a_primary_above_the_floor() {
        let dim = 19;
        let rows = 600;
        let mut state = 7u64;
        let mut vectors: Vec<f32> = (0..rows * dim)
            .map(|_| {
                state = super::super::mix(state);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        normalise(&mut vectors, dim);
        let floor = 0.45;
        // Primaries across the 256-row blocks, and none at all.
        for primaries in [300, 600, 0, 1] {
            let block = PairBlock {
                vectors: &vectors,
                primaries,
            };
            let mut got = CpuProducts.candidates(&[block], dim, floor).remove(0);
            got.sort_unstable();
            let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
            let mut want = Vec::new();
            for x in 0..primaries.min(rows) {
                for y in x + 1..rows {
                    let dot = cosine(row(x), row(y));
                    // A product within rounding of the floor may fall either way.
                    if (dot - floor).abs() < 1e-5 {
                        continue;
                    }
                    if dot >= floor {
                        want.push(Candidate {
                            x: x as u32,
                            y: y as u32,
                        });
                    }
                }
            }
            got.retain(|c| (cosine(row(c.x as usize), row(c.y as usize)) - floor).abs() >= 1e-5);
            assert_eq!(got, want, "{primaries} primaries");
            assert!(primaries < 300 || want.len() > 500, "{}", want.len());
        }
    }
}
