"""Read a whole mmcurate corpus through its current.json (shards, ledger, index, embeddings,
forgotten list) with webdataset and pyarrow, for the incremental and forget tests.

Prints JSON: {"pointer": {...}, "samples": [{"shard", "key", "sha256", "parts"}...] (every sample
of every listed shard, with the sha256 of its media part), "ledger": [rows without the list
columns], "index": [rows without the binary columns], "embeddings": [ids],
"forgotten": [rows] (the current version's forgotten.parquet, or [])}.

    python tests/python/read_corpus.py OUT_DIR
"""
import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import webdataset as wds

MEDIA = {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "mp4", "webm", "mkv",
         "avi", "mov", "wav", "flac", "mp3", "ogg", "m4a"}


def main(out):
    pointer = json.loads(Path(out, "current.json").read_text())
    samples = []
    for shard in pointer["shards"]:
        for sample in wds.WebDataset(str(Path(out, shard)), shardshuffle=False):
            parts = sorted(k for k in sample if not k.startswith("__"))
            media = [k for k in parts if k in MEDIA]
            samples.append({
                "shard": shard,
                "key": sample["__key__"],
                "parts": parts,
                "sha256": hashlib.sha256(sample[media[0]]).hexdigest() if media else None,
            })
    ledger = []
    for name in pointer["ledger"]:
        table = pq.read_table(str(Path(out, name)))
        keep = [c for c in table.column_names if not str(table.schema.field(c).type).startswith("list")]
        ledger.extend(table.select(keep).to_pylist())
    index = []
    for name in pointer.get("index", []):
        table = pq.read_table(str(Path(out, name)))
        index.extend(table.drop_columns(["video_signature", "audio_fingerprint"]).to_pylist())
    embeddings = []
    for name in pointer["embeddings"]:
        embeddings.extend(pq.read_table(str(Path(out, name)), columns=["id"]).column("id").to_pylist())
    forgotten_path = Path(out, pointer["folder"], "forgotten.parquet")
    forgotten = pq.read_table(str(forgotten_path)).to_pylist() if forgotten_path.exists() else []
    json.dump({"pointer": pointer, "samples": samples, "ledger": ledger, "index": index,
               "embeddings": embeddings, "forgotten": forgotten}, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
