//! All pairs at or above the threshold inside one partition's vectors, by blocked matrix
//! products (`tile`), each reported only from the lowest partition its two rows share, so a
//! pair met in several partitions is reported once. The reported cosine is recomputed exactly
//! (`vector::cosine`) and decides, so it does not depend on where in a block a pair fell.

use super::assign::Memberships;
use super::tile::dot_products;
use super::CosinePair;
use crate::vector::cosine;

/// Rows per block of the product: a 256 × 256 tile of f32 is 256 KiB, in L2 with its inputs.
pub(crate) const PAIR_BLOCK: usize = 256;

/// How far below the threshold a product may fall and still be checked exactly: products
/// of unit vectors are off by about 1e-6.
const PRODUCT_SLACK: f32 = 1e-4;

/// One partition's vectors, gathered: `rows` ascending, `vectors` their unit rows.
pub(crate) struct PartitionVectors {
    pub partition: u32,
    pub rows: Vec<u32>,
    pub vectors: Vec<f32>,
}

impl PartitionVectors {
    pub fn blocks(&self) -> usize {
        self.rows.len().div_ceil(PAIR_BLOCK)
    }
}

/// The pairs whose first member is in row block `block` of the partition (against that block
/// and every later one), reported here only when this is the lowest partition both rows are
/// in (by `memberships`). Appends them to `out` in no particular order.
pub(crate) fn pairs_from_block(
    part: &PartitionVectors,
    block: usize,
    dim: usize,
    min_cosine: f32,
    memberships: &Memberships,
    out: &mut Vec<CosinePair>,
) {
    let n = part.rows.len();
    let first = block * PAIR_BLOCK;
    let rows_here = PAIR_BLOCK.min(n - first);
    let left = &part.vectors[first * dim..(first + rows_here) * dim];
    let mut tile = vec![0f32; PAIR_BLOCK * PAIR_BLOCK];
    let candidate = min_cosine - PRODUCT_SLACK;
    let row = |i: usize| &part.vectors[i * dim..(i + 1) * dim];
    let mut other = first;
    while other < n {
        let cols = PAIR_BLOCK.min(n - other);
        let right = &part.vectors[other * dim..(other + cols) * dim];
        dot_products(left, right, dim, &mut tile);
        for i in 0..rows_here {
            let line = &tile[i * cols..(i + 1) * cols];
            // Inside the diagonal block, only the pairs above the diagonal.
            let from = if other == first { i + 1 } else { 0 };
            for (j, &dot) in line.iter().enumerate().skip(from) {
                if dot < candidate {
                    continue;
                }
                let (x, y) = (first + i, other + j);
                let (ra, rb) = (part.rows[x], part.rows[y]);
                if lowest_shared(memberships.of(ra), memberships.of(rb)) != Some(part.partition) {
                    continue;
                }
                let exact = cosine(row(x), row(y));
                if exact >= min_cosine {
                    let (a, b) = if ra < rb { (ra, rb) } else { (rb, ra) };
                    out.push(CosinePair {
                        a: u64::from(a),
                        b: u64::from(b),
                        cosine: exact,
                    });
                }
            }
        }
        other += cols;
    }
}

/// The lowest value in both ascending lists.
fn lowest_shared(a: &[u32], b: &[u32]) -> Option<u32> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(a[i]),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_shared_partition() {
        assert_eq!(lowest_shared(&[1, 4, 7], &[2, 4, 7]), Some(4));
        assert_eq!(lowest_shared(&[1, 3], &[2, 4]), None);
        assert_eq!(lowest_shared(&[], &[2]), None);
    }
}
