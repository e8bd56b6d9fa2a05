"""Edits made by hand to an output, for `mmcurate verify`'s tests (pyarrow writes them).

    python tests/python/ledger_edits.py drop-first-kept LEDGER.parquet
        Rewrites the ledger with its first kept row marked dropped; prints {"id": ..., "key": ...}.
    python tests/python/ledger_edits.py forgotten OUT.parquet SHA256 ID
        Writes a forgotten.parquet (sha256, id, request_id, forgotten_at) naming one sample.
"""
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def drop_first_kept(path):
    table = pq.read_table(path)
    rows = table.to_pylist()
    first = next(r for r in rows if r["status"] == "kept")
    first["status"] = "dropped"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    print(json.dumps({"id": first["id"], "key": first["key"]}))


def forgotten(path, sha256, sample_id):
    table = pa.table({"sha256": [sha256], "id": [sample_id], "request_id": ["REQ-1"],
                      "forgotten_at": ["2026-01-01T00:00:00Z"]})
    pq.write_table(table, path)
    print(json.dumps({"rows": 1}))


if __name__ == "__main__":
    if sys.argv[1] == "drop-first-kept":
        drop_first_kept(sys.argv[2])
    else:
        forgotten(sys.argv[2], sys.argv[3], sys.argv[4])
