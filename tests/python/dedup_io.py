"""Inputs and outputs of `mmcurate dedup` for tests/it/dedup_cli.rs, with the real writers and
readers a user has (NumPy, pyarrow).

  dedup_io.py make DIR   writes DIR/emb.npy (float32, 3000 x 64, unnormalised rows with planted
                         copies), DIR/emb16.npy (the same as float16), DIR/parts/ (emb.npy in
                         two files), DIR/emb.parquet (list<float32> column "vec"); prints the
                         exact pairs >= 0.9 of the float32 rows by brute force (float64).
  dedup_io.py read DIR   prints DIR/pairs.parquet and DIR/groups.parquet as JSON (with the id
                         columns and their types when the files have them).
"""

import json
import os
import sys

import numpy as np


def make(out: str) -> None:
    rng = np.random.default_rng(11)
    n, d = 3000, 64
    x = rng.standard_normal((n, d)).astype(np.float32)
    for i in range(0, n, 10):
        j = (i * 7 + 3) % n
        x[j] = x[i] + 0.15 * rng.standard_normal(d).astype(np.float32)
    x *= rng.uniform(0.5, 3.0, (n, 1)).astype(np.float32)
    os.makedirs(os.path.join(out, "parts"), exist_ok=True)
    np.save(os.path.join(out, "emb.npy"), x)
    np.save(os.path.join(out, "emb16.npy"), x.astype(np.float16))
    np.save(os.path.join(out, "parts", "000.npy"), x[:1234])
    np.save(os.path.join(out, "parts", "001.npy"), x[1234:])
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [f"s{i}" for i in range(n)], "vec": pa.array(list(x), type=pa.list_(pa.float32()))})
    pq.write_table(table, os.path.join(out, "emb.parquet"), row_group_size=700)
    u = x.astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sims = u @ u.T
    a, b = np.nonzero(np.triu(sims >= 0.9, 1))
    print(json.dumps({"pairs": [[int(p), int(q)] for p, q in zip(a, b)]}))


def read(out: str) -> None:
    import pyarrow.parquet as pq

    pairs = pq.read_table(os.path.join(out, "pairs.parquet"))
    groups = pq.read_table(os.path.join(out, "groups.parquet"))
    out = {
        "pair_types": [str(f.type) for f in pairs.schema],
        "pairs": [[r["a"], r["b"], r["cosine"]] for r in pairs.to_pylist()],
        "groups": [[r["row"], r["group"], r["kept"]] for r in groups.to_pylist()],
    }
    if "a_id" in pairs.column_names:
        out["pair_ids"] = [[r["a_id"], r["b_id"]] for r in pairs.to_pylist()]
        out["group_ids"] = [[r["id"], r["group_id"]] for r in groups.to_pylist()]
        out["group_types"] = [str(f.type) for f in groups.schema]
    print(json.dumps(out))


if __name__ == "__main__":
    {"make": make, "read": read}[sys.argv[1]](sys.argv[2])
