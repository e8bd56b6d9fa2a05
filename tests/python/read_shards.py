"""Read all shards (every series) of a pipeline output's current version with the webdataset
library, by the shard list of its current.json (or shards/*.tar of a version folder).

No decoding: each sample's parts are reported as byte length + sha256; the .json part is
also parsed and the .txt part decoded as UTF-8. Any unreadable shard (or malformed
sample) raises, so the exit status is non-zero. Prints to stdout:
    {"samples": [{"key", "parts": {ext: {"bytes", "sha256"}}, "json"?, "txt"?}], "shards": [...]}

    python tests/python/read_shards.py OUT_DIR
"""
import hashlib
import json
import sys

import webdataset as wds

from current_version import current_files


def main():
    shards = current_files(sys.argv[1], "shards", "shards", "*.tar")
    if not shards:
        raise SystemExit(f"no shards/*.tar under {sys.argv[1]}")
    # webdataset 1.0.x: shardshuffle must be explicit; empty_check=False so an empty
    # (but valid) shard set is reported as zero samples rather than an error.
    dataset = wds.WebDataset(shards, shardshuffle=False, empty_check=False)
    samples = []
    for sample in dataset:
        entry = {"key": sample["__key__"], "parts": {}}
        for ext, data in sample.items():
            if ext.startswith("__"):  # __key__, __url__, __local_path__
                continue
            entry["parts"][ext] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if "json" in sample:
            entry["json"] = json.loads(sample["json"])
        if "txt" in sample:
            entry["txt"] = sample["txt"].decode("utf-8")
        samples.append(entry)
    json.dump({"samples": samples, "shards": shards}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
