"""Make a deterministic benchmark corpus of JPEGs from the test photos (tests/media/images).

Each output image is a random crop (>= 50% of each side) of a random source image,
resized (Lanczos, aspect kept) so its longer side is 256..2048 px, saved as RGB JPEG
with quality 75..95 as img-000000.jpg, img-000001.jpg, ...  The same --seed always
gives the same files.

    python scripts/bench/make_corpus.py --count 2000 --out /tmp/benchcorpus
"""
import argparse
import random
from multiprocessing import Pool
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
_sources = {}  # per-worker cache of decoded source images


def _load(path):
    if path not in _sources:
        with Image.open(path) as im:
            _sources[path] = im.convert("RGB")
    return _sources[path]


def make_one(job):
    index, seed, sources, out = job
    rng = random.Random(f"{seed}:{index}")  # per-image RNG: independent of worker scheduling
    src = _load(rng.choice(sources))
    w, h = src.size
    cw, ch = rng.randint((w + 1) // 2, w), rng.randint((h + 1) // 2, h)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    longer = rng.randint(256, 2048)
    scale = longer / max(cw, ch)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    img = src.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.LANCZOS)
    path = Path(out) / f"img-{index:06d}.jpg"
    img.save(path, "JPEG", quality=rng.randint(75, 95))
    return path.stat().st_size, size[0] * size[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--media", default="tests/media/images",
                    help="source images; relative paths are resolved against the repo root")
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()

    media = Path(args.media)
    if not media.is_absolute():
        media = (REPO / media).resolve()
    sources = sorted(str(p) for p in media.iterdir()
                     if p.suffix.lower() in (".jpg", ".png"))
    if not sources:
        raise SystemExit(f"no .jpg/.png images in {media}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    jobs = [(i, args.seed, sources, str(out)) for i in range(args.count)]
    with Pool(args.procs) as pool:
        results = pool.map(make_one, jobs, chunksize=8)
    total_bytes = sum(b for b, _ in results)
    mean_mp = sum(px for _, px in results) / max(1, len(results)) / 1e6
    print(f"made {len(results)} JPEGs in {out}: {total_bytes / 1e6:.1f} MB total, "
          f"mean {mean_mp:.2f} MP (seed {args.seed}, {len(sources)} sources)")


if __name__ == "__main__":
    main()
