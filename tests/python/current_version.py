"""Where the readers find a pipeline output's files: through `current.json`, the commit pointer
at the output root, which names the current version's folder and its shard, ledger and
embeddings lists (paths relative to the root). A folder without `current.json` (a version folder
given directly) is read as it is.
"""
import json
from pathlib import Path


def current_pointer(out):
    """The parsed current.json of the output `out`, or None."""
    pointer = Path(out, "current.json")
    return json.loads(pointer.read_text()) if pointer.exists() else None


def current_folder(out):
    """The current version's folder of `out` (or `out` itself without current.json)."""
    pointer = current_pointer(out)
    return Path(out, pointer["folder"]) if pointer else Path(out)


def current_files(out, kind, folder, pattern):
    """The current version's `kind` files ("shards", "ledger", "embeddings") as paths: the list
    in current.json, or `folder/pattern` globbed without one."""
    pointer = current_pointer(out)
    if pointer:
        return [str(Path(out, name)) for name in pointer[kind]]
    return sorted(str(p) for p in Path(out, folder).glob(pattern))
