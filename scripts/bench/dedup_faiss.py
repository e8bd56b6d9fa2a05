"""The FAISS peer of `mmcurate dedup`: all pairs with inner product >= T among the rows of a
.npy of unit vectors, the way a user would do it with faiss-cpu: IndexIVFFlat over an
IndexFlatIP quantiser with nlist = 4 * sqrt(N), trained on a seeded sample of 39 * nlist rows
(FAISS's own minimum), nprobe 8, range_search of every row at the threshold in blocks.

Writes the pairs (a < b) to OUT.npy as an int64 (P, 2) array and prints one JSON line.

usage: python dedup_faiss.py EMB.npy T OUT.npy [--threads 2]
"""

import argparse
import json
import math
import time

import faiss
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("embeddings")
    parser.add_argument("min_cosine", type=float)
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nprobe", type=int, default=8)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    x = np.load(args.embeddings, mmap_mode="r")
    n, d = x.shape
    nlist = max(1, int(round(4 * math.sqrt(n))))
    quantiser = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantiser, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train_rows = np.sort(rng.choice(n, size=min(n, 39 * nlist), replace=False))
    index.train(np.ascontiguousarray(x[train_rows], dtype=np.float32))
    trained = time.perf_counter()
    block = 65536
    for start in range(0, n, block):
        index.add(np.ascontiguousarray(x[start : start + block], dtype=np.float32))
    added = time.perf_counter()
    index.nprobe = args.nprobe
    pairs = []
    for start in range(0, n, block):
        q = np.ascontiguousarray(x[start : start + block], dtype=np.float32)
        lims, _dist, ids = index.range_search(q, args.min_cosine)
        rows = np.repeat(np.arange(start, start + len(q), dtype=np.int64), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = ids > rows
        pairs.append(np.stack([rows[keep], ids[keep]], axis=1))
    found = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    searched = time.perf_counter()
    np.save(args.out, found.astype(np.int64))
    print(
        json.dumps(
            {
                "tool": "faiss",
                "faiss": faiss.__version__,
                "rows": int(n),
                "nlist": nlist,
                "nprobe": args.nprobe,
                "threads": args.threads,
                "pairs": int(len(found)),
                "seconds_train": round(trained - started, 2),
                "seconds_add": round(added - trained, 2),
                "seconds_search": round(searched - added, 2),
                "seconds_total": round(time.perf_counter() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
