"""Read every embeddings file of a pipeline output's current version (current.json's list, or
embeddings/*.parquet of a version folder) with pyarrow; print JSON.

Prints {"files": [{"name", "metadata", "schema"}], "rows": [{"id", "image", "text"}]} where
image and text are lists of floats (text null without a caption).

    python tests/python/read_embeddings.py OUT_DIR
"""
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from current_version import current_files


def main(out_dir):
    files, rows = [], []
    for path in map(Path, current_files(out_dir, "embeddings", "embeddings", "*.parquet")):
        table = pq.read_table(path)
        metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        files.append({"name": path.name, "metadata": metadata, "schema": str(table.schema)})
        for row in table.to_pylist():
            rows.append(
                {
                    "id": row["id"],
                    "image": row["clip_image_embedding"],
                    "text": row["clip_text_embedding"],
                }
            )
    json.dump({"files": files, "rows": rows}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
