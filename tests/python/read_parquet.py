"""Read one Parquet file with pyarrow and dump its rows as JSON (`diff.parquet`, say).

    python tests/python/read_parquet.py FILE

Prints {"num_rows": n, "columns": [...], "rows": [...]}.
"""
import json
import sys

import pyarrow.parquet as pq


def main():
    table = pq.read_table(sys.argv[1])
    json.dump({"num_rows": table.num_rows, "columns": table.column_names,
               "rows": table.to_pylist()}, sys.stdout, default=str)
    print()


if __name__ == "__main__":
    main()
