"""Python peer baseline: the per-image work Python curation tools do, timed over a folder.

For every *.jpg in DIR, in --procs processes (multiprocessing.Pool, chunksize 16):
  (a) imagehash.phash(PIL.Image.open(path))
  (b) OpenCV: grayscale imread, resize so the shorter side is 512 (INTER_AREA when
      shrinking, INTER_CUBIC when enlarging), Laplacian variance and mean brightness.
OpenCV is pinned to 1 thread per process, so --procs N uses N cores.
Prints one JSON line: {"tool", "images", "seconds", "images_per_sec", "procs"}.

    python scripts/bench/python_peers.py /tmp/benchcorpus [--procs 2] [--phash-only | --laplacian-only]
"""
import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import imagehash
from PIL import Image

SHORT_SIDE = 512


def _init():
    cv2.setNumThreads(1)


def phash(path):
    return str(imagehash.phash(Image.open(path)))


def laplacian(path):
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cv2 cannot read {path}")
    h, w = img.shape
    scale = SHORT_SIDE / min(h, w)
    if scale != 1.0:
        size = (SHORT_SIDE, round(h * scale)) if w <= h else (round(w * scale), SHORT_SIDE)
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
        img = cv2.resize(img, size, interpolation=interp)
    return float(cv2.Laplacian(img, cv2.CV_64F).var()), float(img.mean())


def both(path):
    return phash(path), laplacian(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N files")
    part = ap.add_mutually_exclusive_group()
    part.add_argument("--phash-only", action="store_true")
    part.add_argument("--laplacian-only", action="store_true")
    args = ap.parse_args()

    files = sorted(str(p) for p in Path(args.dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if args.limit is not None:
        files = files[: args.limit]
    if not files:
        raise SystemExit(f"no JPEGs in {args.dir}")
    if args.phash_only:
        tool, fn = "python-peers-phash", phash
    elif args.laplacian_only:
        tool, fn = "python-peers-laplacian", laplacian
    else:
        tool, fn = "python-peers", both

    with Pool(args.procs, initializer=_init) as pool:
        pool.map(fn, files[: 4 * args.procs], chunksize=1)  # warm up every worker
        start = time.perf_counter()
        results = pool.map(fn, files, chunksize=16)
        seconds = time.perf_counter() - start
    assert len(results) == len(files)
    print(json.dumps({"tool": tool, "images": len(files), "seconds": round(seconds, 3),
                      "images_per_sec": round(len(files) / seconds, 1), "procs": args.procs}))


if __name__ == "__main__":
    main()
