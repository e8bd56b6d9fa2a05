//! All pairs at or above the threshold inside one partition's vectors, by blocked matrix
//! products (`tile`). Only pairs with at least one row whose primary (nearest) partition this
//! is are computed: the replication bound puts each row of a close pair into the other's
//! primary partition, so pairs of two replicas are found elsewhere, and skipping them halves
//! the products or more. The products only nominate candidates (`products`: here on the CPU,
//! or on a GPU); a candidate becomes a pair here, reported only from the lowest partition that
//! is the primary of one row and holds the other, so a pair met in several partitions is
//! reported once. The reported cosine is recomputed exactly (`vector::cosine`) and decides, so
//! it depends neither on where in a block a pair fell nor on the device that nominated it.

use super::assign::Memberships;
use super::tile::dot_products;
use super::CosinePair;
use crate::vector::{cosine, Candidate, PairBlock};

/// Rows per block of the CPU's products: a 256 × 256 tile of f32 is 256 KiB, in L2 with its
/// inputs.
pub(crate) const PAIR_BLOCK: usize = 256;

/// One partition's vectors, gathered: `rows` (the first `primaries` of them the rows whose
/// primary partition this is, ascending, then the replicas, ascending), `vectors` their unit
/// rows, `dim` values each, row-major (a share of the batch's buffer).
pub(crate) struct PartitionVectors<'a> {
    pub partition: u32,
    pub rows: Vec<u32>,
    pub primaries: usize,
    pub vectors: &'a [f32],
}

impl PartitionVectors<'_> {
    /// The block the products search.
    pub fn block(&self) -> PairBlock<'_> {
        PairBlock {
            vectors: self.vectors,
            primaries: self.primaries,
        }
    }
}

/// The candidates whose first member is a primary row in row block `block` of `part` (against
/// that block and every later one): products at or above `floor`, in row order.
pub(crate) fn candidates_from_block(
    part: &PairBlock,
    block: usize,
    dim: usize,
    floor: f32,
) -> Vec<Candidate> {
    let n = part.vectors.len() / dim.max(1);
    let first = block * PAIR_BLOCK;
    // Left rows are primaries only: a replica pairs with later rows, all replicas too.
    let rows_here = PAIR_BLOCK.min(part.primaries - first);
    let left = &part.vectors[first * dim..(first + rows_here) * dim];
    let mut tile = vec![0f32; PAIR_BLOCK * PAIR_BLOCK];
    let mut out = Vec::new();
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
                if dot >= floor {
                    out.push(Candidate {
                        x: (first + i) as u32,
                        y: (other + j) as u32,
                    });
                }
            }
        }
        other += cols;
    }
    out
}

/// The pairs among a partition's candidates that this partition reports (the one
/// [`reporting_partition`] names) and whose exact cosine is at least `min_cosine`. Appends
/// them to `out` in candidate order.
pub(crate) fn pairs_of_candidates(
    part: &PartitionVectors,
    candidates: &[Candidate],
    dim: usize,
    min_cosine: f32,
    memberships: &Memberships,
    out: &mut Vec<CosinePair>,
) {
    let row = |i: usize| &part.vectors[i * dim..(i + 1) * dim];
    for &Candidate { x, y } in candidates {
        let (x, y) = (x as usize, y as usize);
        let (ra, rb) = (part.rows[x], part.rows[y]);
        if reporting_partition(memberships, ra, rb) != Some(part.partition) {
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

/// The partition that reports the pair of rows `a` and `b`: the lower of their primary
/// partitions that also holds the other row; `None` when neither does (the pair is then
/// computed nowhere).
pub(crate) fn reporting_partition(memberships: &Memberships, a: u32, b: u32) -> Option<u32> {
    let (primary_a, list_a) = memberships.primary_and_list(a)?;
    let (primary_b, list_b) = memberships.primary_and_list(b)?;
    let a_primary_holds_b = list_b.binary_search(&primary_a).is_ok();
    let b_primary_holds_a = list_a.binary_search(&primary_b).is_ok();
    match (a_primary_holds_b, b_primary_holds_a) {
        (true, true) => Some(primary_a.min(primary_b)),
        (true, false) => Some(primary_a),
        (false, true) => Some(primary_b),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_reported_by_the_lower_primary_that_holds_the_other_row() {
        let mut m = Memberships::new();
        m.push(1, 2, &[2, 5]); // row 1: primary 2, replica in 5
        m.push(2, 5, &[1, 5]); // row 2: primary 5, replica in 1
        m.push(3, 1, &[1, 2]); // row 3: primary 1, replica in 2
        m.push(4, 7, &[3, 7]); // row 4: primary 7, replica in 3
        m.push(5, 3, &[3, 9]); // row 5: primary 3, replica in 9
        m.push(6, 5, &[2, 5]); // row 6: primary 5, replica in 2
                               // Each primary holds the other row: the lower one.
        assert_eq!(reporting_partition(&m, 1, 6), Some(2));
        // One primary holds the other row: that one.
        assert_eq!(reporting_partition(&m, 1, 2), Some(5));
        assert_eq!(reporting_partition(&m, 1, 3), Some(2));
        // Only 4's primary (7) does not hold 5; 5's primary (3) holds 4.
        assert_eq!(reporting_partition(&m, 4, 5), Some(3));
        // They share partition 1 only as replica (row 2) and primary (row 3): 3's primary.
        assert_eq!(reporting_partition(&m, 2, 3), Some(1));
        // Shared only as replicas of both, or not kept: not reported.
        assert_eq!(reporting_partition(&m, 1, 5), None);
        assert_eq!(reporting_partition(&m, 1, 8), None);
    }
}
