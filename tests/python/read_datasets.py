"""Read a pipeline output's shards with Hugging Face `datasets`, one series at a time.

The current version's folder comes from the output's current.json. Each shard series (its
manifest.json's `shards[].series`) is loaded as users do:
    load_dataset("webdataset", data_files={"train": tars}, split="train")
with the columns `datasets` infers itself. The media columns are then cast to `decode=False`,
so the original bytes come back (no decoding). `datasets` needs torchcodec (PyTorch) even to
store audio bytes; where it is not installed, an audio series is loaded with the columns the
builder infers and its audio column typed as plain bytes instead (printed in "notes").
Prints to stdout:
    {"series": {name: {"columns": {col: feature}, "rows": n}}, "notes": [...],
     "samples": [{"series", "key", "url", "parts", "media": ext, "sha256", "bytes", "txt"?,
                  "json"}]}

    python tests/python/read_datasets.py OUT_DIR CACHE_DIR
"""
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402

from current_version import current_folder  # noqa: E402

MEDIA_FEATURES = (datasets.Image, datasets.Audio, datasets.Video)


def inferred_features(tars, cache_dir):
    """The columns the webdataset builder infers from the first samples, as load_dataset does."""
    builder = datasets.load_dataset_builder("webdataset", data_files={"train": tars},
                                            cache_dir=cache_dir)
    manager = datasets.DownloadManager(
        dataset_name="webdataset", download_config=datasets.DownloadConfig(cache_dir=cache_dir))
    builder._split_generators(manager)
    return builder.info.features


def load_series(tars, cache_dir, notes, name):
    has_torchcodec = importlib.util.find_spec("torchcodec") is not None
    features = None
    if not has_torchcodec:
        inferred = inferred_features(tars, cache_dir)
        audio = [col for col, f in inferred.items() if isinstance(f, datasets.Audio)]
        if audio:
            notes.append(f"{name}: {audio} read as bytes (datasets' Audio needs torchcodec)")
            features = datasets.Features({
                col: datasets.Value("binary") if col in audio else f
                for col, f in inferred.items()})
    ds = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train",
                               cache_dir=cache_dir, features=features)
    for col, feature in ds.features.items():
        if isinstance(feature, MEDIA_FEATURES):
            ds = ds.cast_column(col, type(feature)(decode=False))
    return ds


def main():
    out, cache_dir = current_folder(sys.argv[1]), sys.argv[2]
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    manifest = json.loads((out / "manifest.json").read_text())
    series = {}
    for shard in manifest["shards"]:
        series.setdefault(shard["series"], []).append(str(out / shard["name"]))
    report = {"series": {}, "samples": [], "notes": []}
    for name, tars in sorted(series.items()):
        ds = load_series(tars, cache_dir, report["notes"], name)
        report["series"][name] = {
            "columns": {col: repr(f) for col, f in ds.features.items()},
            "rows": len(ds),
        }
        for row in ds:
            # The sample's media part: the one named by the format in its .json.
            ext = row["json"]["mmcurate"]["measurements"]["format"]
            value = row[ext]
            data = value["bytes"] if isinstance(value, dict) else value
            sample = {
                "series": name,
                "key": row["__key__"],
                "url": row["__url__"],
                # The parts this sample has (datasets fills a part it lacks with None).
                "parts": sorted(c for c in row if not c.startswith("__") and row[c] is not None),
                "media": ext,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "json": row["json"],
            }
            if "txt" in row:
                sample["txt"] = row["txt"]
            report["samples"].append(sample)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
