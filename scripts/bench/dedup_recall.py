"""Recall of pair files against an exact search on a seeded sample of rows: every pair >= T that
involves one of S sampled rows is found by brute force (blocked products in float32, checked in
float64 near the threshold), and each tool's share of them is printed as one JSON line.

usage: python dedup_recall.py EMB.npy T --mmcurate DIR/pairs.parquet --faiss PAIRS.npy [--sample 500]
"""

import argparse
import json

import numpy as np


def pair_keys(a: np.ndarray, b: np.ndarray) -> set:
    return set(zip(a.tolist(), b.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("embeddings")
    parser.add_argument("min_cosine", type=float)
    parser.add_argument("--mmcurate")
    parser.add_argument("--faiss")
    parser.add_argument("--sample", type=int, default=500)
    args = parser.parse_args()
    x = np.load(args.embeddings, mmap_mode="r")
    n = x.shape[0]
    rng = np.random.default_rng(7)
    sample = np.sort(rng.choice(n, size=min(n, args.sample), replace=False))
    q = np.asarray(x[sample], dtype=np.float32)
    q64 = q.astype(np.float64)
    exact = set()
    block = 100_000
    for start in range(0, n, block):
        chunk = np.asarray(x[start : start + block], dtype=np.float32)
        dots = q @ chunk.T
        qi, cj = np.nonzero(dots >= args.min_cosine - 1e-3)
        for i, j in zip(qi.tolist(), cj.tolist()):
            row = start + j
            if row == sample[i]:
                continue
            if float(q64[i] @ chunk[j].astype(np.float64)) >= args.min_cosine:
                s = int(sample[i])
                exact.add((min(s, row), max(s, row)))
    out = {"sampled_rows": int(len(sample)), "exact_pairs": len(exact)}
    if args.mmcurate:
        import pyarrow.parquet as pq

        t = pq.read_table(args.mmcurate, columns=["a", "b"])
        found = pair_keys(t.column("a").to_numpy(), t.column("b").to_numpy())
        hit = sum(1 for p in exact if p in found)
        out["mmcurate_recall"] = hit / len(exact) if exact else 1.0
        out["mmcurate_pairs"] = len(found)
    if args.faiss:
        f = np.load(args.faiss)
        found = pair_keys(f[:, 0], f[:, 1])
        hit = sum(1 for p in exact if p in found)
        out["faiss_recall"] = hit / len(exact) if exact else 1.0
        out["faiss_pairs"] = len(found)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
