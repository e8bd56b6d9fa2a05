#!/usr/bin/env python3
"""The PyTorch peer of `mmcurate run` on the GPU (issue 5, item 7): the same files, the same
GPU, the same CLIP folder and dtype, written as a PyTorch user would write it.

    python3 scripts/gpu/torch_pipeline.py CORPUS --model DIR [--dtype bf16|fp16|fp32]
        [--batch-size 256] [--limit N] [--device cuda|cpu] [--read-threads N]
        [--prefetch 4] [--near-max-bits 4] [--semantic-min-cosine 0.95] [--json-out FILE]

CORPUS is a folder of IMG.jpg files with IMG.txt captions (scripts/gpu/make_jpegs.py). Per
batch of --batch-size files:

- read: a thread pool reads each file's bytes, its caption and the bytes' sha256 (mmcurate
  hashes every sample for exact dedup), and the batch's captions are tokenised
  (`CLIPTokenizerFast` from DIR, padded to the batch's longest caption, at most 77 tokens);
  batches are read ahead (--prefetch) so reading overlaps the GPU work;
- decode: `torchvision.io.decode_jpeg(list_of_tensors, mode=RGB, device=...)`, batched
  (nvJPEG on CUDA); a batch that fails is decoded image by image and the bad ones counted;
- quality, per image with torch ops on the device, what mmcurate measures: luminance
  (0.299 R + 0.587 G + 0.114 B), resize to a 512-px shorter side (area when shrinking, bicubic
  when enlarging), 3x3 Laplacian variance (reflect-101 borders), mean brightness, the fraction
  of pixels at 0 or 255; then, batched, pHash (32x32 area resize, 2-D DCT, 8x8 low band against
  its median) and dHash (9x8);
- preprocess: CLIP's, on the device: bicubic (antialiased) resize of the shorter side to the
  model's size, centre crop, OpenAI mean/std, cast to --dtype;
- model: `CLIPModel.get_image_features` on the batch, `get_text_features` on its captions,
  both L2-normalised; the CLIP score is their cosine.

After the last batch, dedup (on the device, brute force): exact copies by sha256, near copies
(pHash within --near-max-bits of an earlier sample, default 4) among the rest, semantic copies
(image-embedding cosine >= --semantic-min-cosine with an earlier sample, default 0.95) among the
rest. This counts the samples dedup would drop; it does not group them into connected
components, and nothing is written (no shards, no ledger).

Stage times: on CUDA from CUDA events recorded on the current stream between the stages (no
synchronisation inside the loop, so the host runs ahead as a PyTorch pipeline would), i.e. the
GPU timeline split by stage; work that overlaps on another stream counts where the current
stream waits for it, and `read_wait` is the timeline spent waiting for the next batch's bytes.
On the CPU from the wall clock. `read_busy_s` is the summed time the reader threads spent
reading and hashing. The end-to-end and loop figures are host wall-clock times.

Prints progress on stderr and one JSON line on stdout, last: images/s end to end (model load
included), images/s of the loop, per-stage seconds, dedup counts, peak GPU memory. Exit code 2
when the setup is wrong (no GPU with --device cuda, no torchvision, no model, no images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
DTYPES = {"fp32": "float32", "f32": "float32", "float32": "float32",
          "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "f16": "float16", "float16": "float16"}
ANALYSIS_SIDE = 512


def fail(message: str, code: int = 2) -> "NoReturn":  # noqa: F821
    print(f"torch_pipeline.py: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--model", type=Path, required=True, help="a CLIP folder in the Hugging Face layout")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--read-threads", type=int, default=min(16, os.cpu_count() or 2))
    ap.add_argument("--prefetch", type=int, default=4, help="batches read ahead")
    ap.add_argument("--near-max-bits", type=int, default=4,
                    help="pHash bits within which a sample is a near copy (0: off; mmcurate's "
                         "dedup.phash_max_distance)")
    ap.add_argument("--semantic-min-cosine", type=float, default=0.95,
                    help="image-embedding cosine at which a sample is a semantic copy (0: off; "
                         "mmcurate's dedup.embedding_min_cosine)")
    ap.add_argument("--json-out", type=Path, help="also write the JSON result here")
    args = ap.parse_args()
    if args.batch_size < 1 or args.read_threads < 1 or args.prefetch < 1 or args.limit < 0:
        ap.error("--batch-size, --read-threads and --prefetch must be >= 1, --limit >= 0")
    return args


class StageClock:
    """Splits a timeline into named stages: mark(name) ends the stage `name` now. On CUDA the
    marks are events on the current stream (read at the end), elsewhere wall-clock times."""

    def __init__(self, torch, device) -> None:
        self.torch = torch
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((name, event))
        else:
            self.marks.append((name, time.perf_counter()))

    def totals(self) -> dict[str, float]:
        if self.cuda:
            self.torch.cuda.synchronize()
        out: dict[str, float] = {}
        for (_, a), (name, b) in zip(self.marks, self.marks[1:]):
            seconds = a.elapsed_time(b) / 1e3 if self.cuda else b - a
            out[name] = out.get(name, 0.0) + seconds
        return out


def main() -> int:
    t_script = time.perf_counter()
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        fail(f"needs PyTorch ({e})")
    try:
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception as e:  # ImportError, or an extension that does not load
        fail(f"needs torchvision with its image extension ({type(e).__name__}: {e})")
    try:
        import transformers
        from transformers import CLIPModel, CLIPTokenizerFast
    except ImportError as e:
        fail(f"needs transformers ({e})")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        fail(f"--device {args.device!r}: {e}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {args.device}: PyTorch sees no CUDA GPU "
                 f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu to test on the CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            fail(f"--device {args.device}: only {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        fail(f"--device {args.device}: use cuda, cuda:N or cpu")
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    dtype = getattr(torch, DTYPES[args.dtype])

    if not (args.model / "config.json").is_file():
        fail(f"--model {args.model}: no config.json there (make one with scripts/bench/make_clip_model.py)")
    if not args.corpus.is_dir():
        fail(f"{args.corpus}: not a folder")
    paths = sorted(p for p in args.corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        fail(f"{args.corpus}: no .jpg files")
    n = len(paths)

    # Setup: CUDA context, model and tokenizer. Timed as part of the end-to-end figure.
    t_setup = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        model = CLIPModel.from_pretrained(args.model, dtype=dtype).to(device).eval()
        tokenizer = CLIPTokenizerFast.from_pretrained(args.model)
    except Exception as e:
        fail(f"--model {args.model}: cannot load it ({type(e).__name__}: {e})")
    image_size = model.config.vision_config.image_size
    context = model.config.text_config.max_position_embeddings
    dim = model.config.projection_dim
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    luma_weights = torch.tensor([0.299, 0.587, 0.114], device=device).view(3, 1, 1)
    k = torch.arange(8, device=device, dtype=torch.float64).view(8, 1)
    x = torch.arange(32, device=device, dtype=torch.float64).view(1, 32)
    dct = torch.cos(torch.pi * k * (2 * x + 1) / 64).to(torch.float32)  # [8, 32]
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_s = time.perf_counter() - t_setup
    log(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers "
        f"{transformers.__version__}; {n} images, {args.model} ({dim}-d) in {args.dtype} on "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, batch "
        f"{args.batch_size}; setup {setup_s:.2f} s")

    # Reader: a producer thread hands batches of (bytes tensors, sha256s, input_ids) to the loop.
    read_busy = [0.0]
    busy_lock = threading.Lock()

    def read_one(path: Path) -> tuple:
        t = time.perf_counter()
        with open(path, "rb") as f:
            buf = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(buf)
        sha = hashlib.sha256(buf).hexdigest()
        try:
            caption = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            caption = ""
        data = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        with busy_lock:
            read_busy[0] += time.perf_counter() - t
        return data, sha, caption

    batches = [(i, paths[i : i + args.batch_size]) for i in range(0, n, args.batch_size)]
    ready: queue.Queue = queue.Queue(maxsize=args.prefetch)
    stop = threading.Event()

    def produce() -> None:
        try:
            with ThreadPoolExecutor(args.read_threads) as pool:
                for start, batch in batches:
                    if stop.is_set():
                        return
                    items = list(pool.map(read_one, batch))
                    captions = [c for _, _, c in items]
                    has_text = [bool(c) for c in captions]
                    ids = None
                    if any(has_text):
                        ids = tokenizer([c for c in captions if c], padding="longest", truncation=True,
                                        max_length=context, return_tensors="pt")["input_ids"]
                    ready.put((start, [d for d, _, _ in items], [s for _, s, _ in items], has_text, ids))
        except BaseException as e:  # hand the error to the loop
            ready.put(e)
        ready.put(None)

    producer = threading.Thread(target=produce, name="reader", daemon=True)

    image_emb = torch.zeros(n, dim, device=device, dtype=torch.float32)
    text_emb = torch.zeros(n, dim, device=device, dtype=torch.float32)
    text_mask = torch.zeros(n, device=device, dtype=torch.bool)
    valid = torch.zeros(n, device=device, dtype=torch.bool)
    stats = torch.zeros(n, 3, device=device, dtype=torch.float32)  # sharpness, brightness, clipped
    phash = torch.zeros(n, 64, device=device, dtype=torch.bool)
    dhash = torch.zeros(n, 64, device=device, dtype=torch.bool)
    shas: list[str] = [""] * n
    unreadable: list[str] = []

    def decode(datas: list, start: int) -> list:
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
        except Exception:
            out = []
            for j, d in enumerate(datas):
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except Exception as e:
                    unreadable.append(f"{paths[start + j].name}: {type(e).__name__}: {str(e)[:120]}")
                    out.append(None)
            return out

    def measure(rgb):
        """Quality of one decoded image [3, H, W] uint8: (stats [3], 32x32, 8x9) on the device."""
        px = rgb.float()
        # Element-wise ops, not conv2d: every image has its own shape, and cuDNN would plan
        # each new shape afresh.
        gray = (px * luma_weights).sum(dim=0)[None, None]  # [1, 1, H, W]
        h, w = gray.shape[-2:]
        short = min(h, w)
        if short != ANALYSIS_SIDE:
            s = ANALYSIS_SIDE / short
            size = (max(1, round(h * s)), max(1, round(w * s)))
            if short > ANALYSIS_SIDE:
                gray = F.interpolate(gray, size=size, mode="area")
            else:
                gray = F.interpolate(gray, size=size, mode="bicubic", align_corners=False)
        gray = gray.round_().clamp_(0, 255)
        p = F.pad(gray, (1, 1, 1, 1), mode="reflect")
        lap = (p[..., 1:-1, :-2] + p[..., 1:-1, 2:] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
               - 4 * gray)
        st = torch.stack([lap.var(correction=0), gray.mean(),
                          ((gray == 0) | (gray == 255)).float().mean()])
        return st, F.interpolate(gray, size=(32, 32), mode="area")[0, 0], \
            F.interpolate(gray, size=(8, 9), mode="area")[0, 0]

    def preprocess(rgb):
        """CLIPImageProcessor on the device: shorter side to image_size (bicubic), centre crop."""
        px = rgb.float()[None]
        h, w = px.shape[-2:]
        s = image_size / min(h, w)
        size = (max(image_size, round(h * s)), max(image_size, round(w * s)))
        px = F.interpolate(px, size=size, mode="bicubic", antialias=True, align_corners=False)
        top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
        return px[0, :, top : top + image_size, left : left + image_size]

    def features(out):
        # transformers >= 5.2x returns an output object whose pooler_output is projected.
        return getattr(out, "pooler_output", out)

    clock = StageClock(torch, device)
    t_loop = time.perf_counter()
    producer.start()
    clock.mark("start")
    done = 0
    last_log = time.perf_counter()
    with torch.inference_mode():
        while True:
            item = ready.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                stop.set()
                raise item
            start, datas, batch_shas, has_text, ids = item
            clock.mark("read_wait")
            b = len(datas)
            shas[start : start + b] = batch_shas
            images = decode(datas, start)
            clock.mark("decode")

            ok = [j for j, im in enumerate(images) if im is not None]
            if not ok:
                done += b
                continue
            rows = torch.tensor([start + j for j in ok], device=device)
            measured = [measure(images[j]) for j in ok]
            s32 = torch.stack([m[1] for m in measured])  # [b, 32, 32]
            s98 = torch.stack([m[2] for m in measured])  # [b, 8, 9]
            stats[rows] = torch.stack([m[0] for m in measured])
            low = (dct @ s32 @ dct.T).flatten(1)  # [b, 64]
            median = low.sort(dim=1).values[:, 31:33].mean(dim=1, keepdim=True)
            phash[rows] = low > median
            dhash[rows] = (s98[:, :, 1:] > s98[:, :, :-1]).flatten(1)
            valid[rows] = True
            clock.mark("quality")

            pixels = torch.stack([preprocess(images[j]) for j in ok]).clamp_(0, 255)
            pixels = ((pixels / 255.0 - mean) / std).to(dtype)
            del images
            clock.mark("preprocess")

            emb = features(model.get_image_features(pixel_values=pixels)).float()
            image_emb[rows] = F.normalize(emb, dim=-1)
            clock.mark("model_image")

            if ids is not None:
                text_rows = torch.tensor([start + j for j in range(b) if has_text[j]], device=device)
                temb = features(model.get_text_features(input_ids=ids.to(device, non_blocking=True))).float()
                text_emb[text_rows] = F.normalize(temb, dim=-1)
                text_mask[text_rows] = True
            clock.mark("model_text")
            done += b
            if time.perf_counter() - last_log > 10:
                last_log = time.perf_counter()
                log(f"  {done}/{n} images, {done / (last_log - t_loop):.0f}/s")

        # Dedup over the whole run, on the device.
        keep = valid.clone()
        first: dict[str, int] = {}
        exact = []
        for i, s in enumerate(shas):
            if s in first:
                exact.append(i)
            else:
                first[s] = i
        if exact:
            keep[torch.tensor(exact, device=device)] = False
        n_exact = len(exact)
        bits = phash.to(torch.float16 if device.type == "cuda" else torch.float32)
        near = torch.zeros(n, device=device, dtype=torch.bool)
        idx = torch.arange(n, device=device)
        chunk = 4096
        for c in range(0, n if args.near_max_bits > 0 else 0, chunk):
            a = bits[c : c + chunk]
            dist = a @ (1 - bits).T + (1 - a) @ bits.T  # Hamming distances, [c, n]
            earlier = idx.view(1, -1) < idx[c : c + chunk].view(-1, 1)
            hit = (dist <= args.near_max_bits) & earlier & keep.view(1, -1)
            near[c : c + chunk] = hit.any(dim=1)
        near &= keep
        keep &= ~near
        semantic = torch.zeros(n, device=device, dtype=torch.bool)
        for c in range(0, n if args.semantic_min_cosine > 0 else 0, chunk):
            sim = image_emb[c : c + chunk] @ image_emb.T
            earlier = idx.view(1, -1) < idx[c : c + chunk].view(-1, 1)
            hit = (sim >= args.semantic_min_cosine) & earlier & keep.view(1, -1)
            semantic[c : c + chunk] = hit.any(dim=1)
        semantic &= keep
        keep &= ~semantic
        scores = (image_emb * text_emb).sum(dim=1)[text_mask & valid]
        # Pairwise cosine of image embeddings over the first 1024: with random weights these
        # say whether semantic dedup has anything to tell apart.
        m = min(n, 1024)
        sim = (image_emb[:m] @ image_emb[:m].T)[~torch.eye(m, dtype=torch.bool, device=device)]
        q = torch.tensor([0.5, 0.99], device=device)
        sim_q = torch.quantile(sim.float()[: 1 << 20], q).tolist() if m > 1 else [float("nan")] * 2
        score_q = torch.quantile(scores.float(), q).tolist() if scores.numel() else [float("nan")] * 2
        sharp_q = torch.quantile(stats[valid][:, 0], q).tolist() if bool(valid.any()) else [float("nan")] * 2
        counts = dict(exact=n_exact, near=int(near.sum()), semantic=int(semantic.sum()),
                      kept=int(keep.sum()), unreadable=len(unreadable), scored=int(scores.numel()))
        clock.mark("dedup")
    stop.set()
    producer.join(timeout=5)
    stages = clock.totals()
    end = time.perf_counter()
    loop_s = end - t_loop
    e2e_s = end - t_setup
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    if unreadable:
        log(f"  {len(unreadable)} unreadable, e.g. {unreadable[0]}")
    result = {
        "tool": "pytorch",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "model": str(args.model),
        "projection_dim": dim,
        "dtype": str(dtype).replace("torch.", ""),
        "batch_size": args.batch_size,
        "read_threads": args.read_threads,
        "images": n,
        "images_per_sec": round(n / e2e_s, 1),
        "images_per_sec_loop": round(n / loop_s, 1),
        "seconds": {"setup": round(setup_s, 3), "loop": round(loop_s, 3), "e2e": round(e2e_s, 3),
                    "script": round(end - t_script, 3)},
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "stage_clock": "cuda events (GPU timeline)" if device.type == "cuda" else "wall clock",
        "read_busy_s": round(read_busy[0], 3),
        "dedup": counts,
        "dedup_rules": {"exact": "sha256", "near_max_bits": args.near_max_bits,
                        "semantic_min_cosine": args.semantic_min_cosine},
        "image_embedding_cosine_p50_p99": [round(v, 4) for v in sim_q],
        "clip_score_p50_p99": [round(v, 4) for v in score_q],
        "sharpness_p50_p99": [round(v, 1) for v in sharp_q],
        "peak_gpu_memory_mib": round(peak) if peak is not None else None,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    line = json.dumps(result)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    log(f"  {n} images in {e2e_s:.2f} s end to end ({n / e2e_s:.0f}/s; loop {n / loop_s:.0f}/s)")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
