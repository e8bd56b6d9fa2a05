#!/usr/bin/env python3
"""Make a web-like corpus of captioned JPEGs from the test images (tests/media/images), fast,
for the GPU end-to-end benchmark (issue 5, scripts/gpu/bench_e2e.sh).

    python3 scripts/gpu/make_jpegs.py --out DIR [--count 20000] [--seed 0] [--procs N]
        [--media DIR] [--exact-fraction 0.02] [--near-fraction 0.03]
        [--progressive-fraction 0] [--min-side 256] [--max-side 1024]

Image i is made from its own random generator (seeded with "SEED:i"), so the files depend only
on --seed and i, never on --procs or scheduling. Each original is a random crop (40-100% of
each side, aspect ratio at most 2.5) of a random source image, flipped half the time, resized
(bicubic) so that its longer side is 256-1024 px (a web-like mix: 45% at 256-512, 35% at
512-800, 20% at 800-1024), saved as a baseline JPEG at quality 70-95 with 4:2:0 chroma
(20% with 4:4:4). Every image gets a caption IMG.txt: the source's caption from captions.tsv
with a random prefix and suffix, so CLIP scores run on every sample.

A few % are duplicates, so dedup has work: --exact-fraction byte-identical copies of an earlier
image (same caption), --near-fraction near copies (re-encoded at another quality, rescaled to
75-95%, or with a 2-4% border cropped away; caption suffix may differ). Source images are
Pillow-decoded once per worker process.

Prints one summary line per aspect and, last, one JSON line: count, total bytes, size and byte
distributions, duplicate counts, seconds.
Needs Pillow only. The source images' origins and licences: tests/media/LICENSES.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PREFIXES = ["", "", "", "a photo of ", "an image of ", "close-up: ", "stock photo, ",
            "picture of ", "view of "]
SUFFIXES = ["", "", "", ", high resolution", " in natural light", ", free to download",
            ", 4k wallpaper", " #photography", ", taken with a phone", " (cropped)",
            ", detail", " on a plain background"]

_state: dict = {}  # per worker: sources, captions, decoded-image cache


def _init(sources: list[str], captions: dict[str, str]) -> None:
    _state["sources"] = sources
    _state["captions"] = captions
    _state["cache"] = {}


def _source(path: str):
    from PIL import Image

    cache = _state["cache"]
    if path not in cache:
        with Image.open(path) as im:
            cache[path] = im.convert("RGB")
    return cache[path]


def _spec(seed: int, index: int, exact: float, near: float) -> tuple:
    """What image `index` is: ("orig",) or ("exact", j) or ("near", j) with j < index."""
    rng = random.Random(f"{seed}:{index}:kind")
    u = rng.random()
    if index >= 16:
        if u < exact:
            return ("exact", rng.randrange(index))
        if u < exact + near:
            return ("near", rng.randrange(index))
    return ("orig",)


def _original(seed: int, index: int, args: dict):
    """The original image `index` stands for (following copies of copies), its RNG and caption."""
    while True:
        spec = _spec(seed, index, args["exact"], args["near"])
        if spec[0] == "orig":
            break
        index = spec[1]
    from PIL import Image

    rng = random.Random(f"{seed}:{index}")
    sources = _state["sources"]
    path = sources[rng.randrange(len(sources))]
    src = _source(path)
    w, h = src.size
    for _ in range(8):
        cw = max(16, round(w * rng.uniform(0.4, 1.0)))
        ch = max(16, round(h * rng.uniform(0.4, 1.0)))
        if max(cw, ch) / min(cw, ch) <= 2.5:
            break
    else:
        cw, ch = w, h
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    u = rng.random()
    lo, hi = args["min_side"], args["max_side"]
    span = hi - lo
    if u < 0.45:
        longer = rng.randint(lo, lo + span // 3)
    elif u < 0.80:
        longer = rng.randint(lo + span // 3, lo + (2 * span) // 3)
    else:
        longer = rng.randint(lo + (2 * span) // 3, hi)
    scale = longer / max(cw, ch)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    img = src.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    quality = rng.randint(70, 95)
    subsampling = 0 if rng.random() < 0.2 else 2
    progressive = rng.random() < args["progressive"]
    base = _state["captions"].get(Path(path).name, "a photo")
    caption = rng.choice(PREFIXES) + base + rng.choice(SUFFIXES)
    return img, dict(quality=quality, subsampling=subsampling, progressive=progressive), caption


def _encode(img, **opts) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", optimize=False, **opts)
    return buf.getvalue()


def make_one(job: tuple) -> tuple:
    index, seed, out, args = job
    from PIL import Image

    spec = _spec(seed, index, args["exact"], args["near"])
    img, opts, caption = _original(seed, index, args)
    if spec[0] == "near":
        rng = random.Random(f"{seed}:{index}:near")
        how = rng.randrange(3)
        if how == 0:  # re-encoded at another quality
            q = opts["quality"]
            opts = dict(opts, quality=q - 15 if q >= 80 else q + 12)
        elif how == 1:  # rescaled
            f = rng.uniform(0.75, 0.95)
            img = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))),
                             Image.Resampling.BICUBIC)
        else:  # a thin border cropped away
            bx, by = round(img.width * rng.uniform(0.02, 0.04)), round(img.height * rng.uniform(0.02, 0.04))
            img = img.crop((bx, by, img.width - bx, img.height - by))
        if rng.random() < 0.5:
            caption = caption.rstrip(" .") + rng.choice([" (copy)", ", repost", "", " - via web"])
    data = _encode(img, **opts)
    stem = Path(out) / f"img-{index:06d}"
    (stem.with_suffix(".jpg")).write_bytes(data)
    (stem.with_suffix(".txt")).write_text(caption + "\n", encoding="utf-8")
    return index, spec[0], len(data), img.width, img.height


def find_media(given: str | None) -> Path:
    candidates = [given] if given else []
    candidates += [os.environ.get("MMCURATE_MEDIA_IMAGES") or "", "tests/media/images",
                   "target/gpu-carry/media/images"]
    for c in candidates:
        if not c:
            continue
        p = Path(c)
        if not p.is_absolute():
            p = REPO / p
        if p.is_dir():
            return p.resolve()
        if given:
            break
    raise SystemExit("make_jpegs.py: no source image folder found (tried --media, "
                     "$MMCURATE_MEDIA_IMAGES, tests/media/images, "
                     "target/gpu-carry/media/images)")


def percentiles(values: list[float], ps=(5, 50, 95)) -> dict:
    v = sorted(values)
    if not v:
        return {}
    return {f"p{p}": v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] for p in ps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--media", help="source images (default: tests/media/images)")
    ap.add_argument("--exact-fraction", type=float, default=0.02)
    ap.add_argument("--near-fraction", type=float, default=0.03)
    ap.add_argument("--progressive-fraction", type=float, default=0.0)
    ap.add_argument("--min-side", type=int, default=256, help="smallest longer side, px")
    ap.add_argument("--max-side", type=int, default=1024, help="largest longer side, px")
    args = ap.parse_args()
    if args.count < 1 or args.procs < 1 or not 0 < args.min_side <= args.max_side:
        ap.error("--count and --procs must be >= 1, and 0 < --min-side <= --max-side")
    if args.exact_fraction < 0 or args.near_fraction < 0 or args.exact_fraction + args.near_fraction > 0.5:
        ap.error("--exact-fraction and --near-fraction must be >= 0 and add up to at most 0.5")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise SystemExit("make_jpegs.py: needs Pillow (python3 -m pip install pillow)")

    media = find_media(args.media)
    sources = sorted(str(p) for p in media.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not sources:
        raise SystemExit(f"make_jpegs.py: no .jpg/.png images in {media}")
    captions: dict[str, str] = {}
    tsv = media / "captions.tsv"
    if tsv.is_file():
        for line in tsv.read_text(encoding="utf-8").splitlines()[1:]:
            name, _, caption = line.partition("\t")
            if caption.strip():
                captions[name.strip()] = caption.strip()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out.iterdir() if p.name.startswith("img-")]
    for p in stale:
        p.unlink()
    opts = dict(exact=args.exact_fraction, near=args.near_fraction,
                progressive=args.progressive_fraction, min_side=args.min_side,
                max_side=args.max_side)
    jobs = [(i, args.seed, str(out), opts) for i in range(args.count)]
    started = time.perf_counter()
    with Pool(args.procs, initializer=_init, initargs=(sources, captions)) as pool:
        results = sorted(pool.imap_unordered(make_one, jobs, chunksize=32))
    seconds = time.perf_counter() - started

    kinds = {"orig": 0, "exact": 0, "near": 0}
    for _, kind, *_ in results:
        kinds[kind] += 1
    sizes = [r[2] for r in results]
    longer = [max(r[3], r[4]) for r in results]
    shorter = [min(r[3], r[4]) for r in results]
    mp = [r[3] * r[4] / 1e6 for r in results]
    total = sum(sizes)
    summary = {
        "tool": "make_jpegs",
        "out": str(out),
        "count": len(results),
        "captions": len(results),
        "total_bytes": total,
        "mean_bytes": round(total / len(results)),
        "bytes": percentiles(sizes),
        "longer_side": percentiles(longer),
        "shorter_side": percentiles(shorter),
        "mean_megapixels": round(sum(mp) / len(mp), 3),
        "originals": kinds["orig"],
        "exact_duplicates": kinds["exact"],
        "near_duplicates": kinds["near"],
        "sources": len(sources),
        "seed": args.seed,
        "procs": args.procs,
        "seconds": round(seconds, 2),
        "images_per_sec": round(len(results) / seconds, 1),
    }
    print(f"made {len(results)} JPEGs + captions in {out} in {seconds:.1f} s on {args.procs} "
          f"processes ({len(results) / seconds:.0f}/s), from {len(sources)} sources in {media}")
    print(f"  total {total / 1e6:.1f} MB, mean {total / len(results) / 1e3:.1f} kB; bytes p5/p50/p95 "
          f"{'/'.join(str(round(v / 1e3)) for v in summary['bytes'].values())} kB")
    print(f"  longer side p5/p50/p95 {'/'.join(map(str, summary['longer_side'].values()))} px, "
          f"shorter side {'/'.join(map(str, summary['shorter_side'].values()))} px, "
          f"mean {summary['mean_megapixels']:.2f} MP")
    print(f"  originals {kinds['orig']}, exact duplicates {kinds['exact']}, near duplicates {kinds['near']}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
