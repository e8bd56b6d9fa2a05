"""Read the current version of a pipeline output as the README shows, through current.json:
the Python `webdataset` library over its shard list, Hugging Face `datasets` over each series'
shards (series from the version's manifest), DuckDB's read_parquet over its ledger list.
Prints JSON: {"version", "webdataset": [keys], "datasets": [keys], "duckdb": {"rows", "kept",
"kept_keys": [keys]}}, each key list sorted.

    python tests/python/read_current.py OUT_DIR CACHE_DIR
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import duckdb  # noqa: E402
import webdataset as wds  # noqa: E402


def main(out, cache_dir):
    current = json.load(open(f"{out}/current.json"))

    shards = [f"{out}/{name}" for name in current["shards"]]
    ds = wds.WebDataset(shards, shardshuffle=False, empty_check=False)
    webdataset_keys = sorted(sample["__key__"] for sample in ds)

    datasets.disable_progress_bars()
    manifest = json.load(open(f"{out}/{current['manifest']}"))
    series = {}
    for shard in manifest["shards"]:
        series.setdefault(shard["series"], []).append(f"{out}/{current['folder']}/{shard['name']}")
    datasets_keys = []
    for tars in series.values():
        part = datasets.load_dataset(
            "webdataset", data_files={"train": tars}, split="train", cache_dir=cache_dir
        )
        datasets_keys.extend(part["__key__"])

    ledger = [f"{out}/{name}" for name in current["ledger"]]
    rows, kept = duckdb.sql(
        "SELECT count(*), count(*) FILTER (WHERE status = 'kept') FROM read_parquet($files)",
        params={"files": ledger},
    ).fetchall()[0]
    kept_keys = duckdb.sql(
        "SELECT key FROM read_parquet($files) WHERE status = 'kept' ORDER BY key",
        params={"files": ledger},
    ).fetchall()

    json.dump(
        {
            "version": current["version"],
            "webdataset": webdataset_keys,
            "datasets": sorted(datasets_keys),
            "duckdb": {"rows": rows, "kept": kept, "kept_keys": [k for (k,) in kept_keys]},
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
