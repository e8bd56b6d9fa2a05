"""Read every ledger file of a pipeline output's current version (current.json's list, or
ledger/*.parquet of a version folder) with pyarrow and dump it as JSON.

Prints {"num_rows": n, "columns": [...], "rows": [...]} to stdout as strict JSON: bytes
become hex strings, NaN/inf floats become the strings "nan"/"inf"/"-inf", and other
non-JSON values (timestamps, decimals, ...) become strings.

    python tests/python/read_ledger.py OUT_DIR
"""
import json
import math
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from current_version import current_files


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def main():
    files = current_files(sys.argv[1], "ledger", "ledger", "*.parquet")
    if not files:
        raise SystemExit(f"no ledger/*.parquet under {sys.argv[1]}")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    json.dump({"num_rows": table.num_rows, "columns": table.column_names,
               "rows": _clean(table.to_pylist())}, sys.stdout, default=_default, allow_nan=False)
    print()


if __name__ == "__main__":
    main()
