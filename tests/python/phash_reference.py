"""Reference perceptual hashes: imagehash.phash and imagehash.dhash for every image in a folder.

Files PIL cannot open are skipped silently. Prints one JSON object to stdout:
    {"<filename>": {"phash": "<hex>", "dhash": "<hex>"}, ...}

    python tests/python/phash_reference.py DIR
"""
import json
import sys
from pathlib import Path

import imagehash
from PIL import Image


def main():
    out = {}
    for path in sorted(Path(sys.argv[1]).iterdir()):
        if not path.is_file():
            continue
        try:
            with Image.open(path) as img:
                img.load()
                out[path.name] = {"phash": str(imagehash.phash(img)),
                                  "dhash": str(imagehash.dhash(img))}
        except Exception:
            continue
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
