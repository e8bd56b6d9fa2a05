#!/usr/bin/env python3
"""CLIP embedding throughput of PyTorch `transformers.CLIPModel` on the CPU: the reference side
of the CLIP benchmark against mmcurate (candle).

    python scripts/bench/clip_torch.py MODEL_DIR [--batch 32] [--images 128] [--texts 256]
        [--threads 2] [--seed 0] [--captions FILE] [--text-padding max_length|longest]
        [--dump-features FILE.npy] [--dump-pixels FILE.npy]

MODEL_DIR is a folder in the Hugging Face layout (config.json, model.safetensors,
tokenizer.json), e.g. one written by scripts/bench/make_clip_model.py. The model runs in float32,
eval mode, under torch.inference_mode(), with torch.set_num_threads(--threads).

- Images: seeded random pixel_values of shape [batch, 3, 224, 224] (uniform [0, 1] pixels
  normalised with OpenAI's mean/std, i.e. what CLIPImageProcessor hands the model), made before
  timing; `get_image_features` is timed over --images images.
- Texts: a fixed list of realistic captions (or the non-empty lines of --captions FILE), caption
  i being list[i % len(list)] for i < --texts, tokenised before timing by
  `CLIPTokenizerFast` from MODEL_DIR with <|startoftext|> ... <|endoftext|> and padded with the
  end-of-text id (49407) to 77 tokens, as OpenAI's tokenizer does (`--text-padding longest` pads
  each batch only to its longest caption instead: the features are the same, since the text
  model is causal and pools at the first end-of-text; mmcurate cuts batches that way).
  `get_text_features` is timed over --texts captions.
- One warm-up batch of each kind runs first and is not timed.

Prints one JSON line on stdout:
  {"tool": "pytorch", "torch": ..., "threads": ..., "batch": ..., "images_per_sec": ...,
   "texts_per_sec": ..., ...}

--dump-features FILE.npy saves the image features ([batch, projection], float32, before L2
normalisation) of the first batch, and beside it that batch's input pixel_values ([batch, 3, 224,
224] float32), the first text batch's input_ids (int64 [batch, L]) and its text features, so the
Rust side can run the same inputs and compare. The companions are named after FILE: with
"features" in its name, that word becomes "pixels", "input-ids" and "text-features"
(torch-features.npy -> torch-pixels.npy, torch-input-ids.npy, torch-text-features.npy);
otherwise "-pixels", "-input-ids" and "-text-features" are added before ".npy".
--dump-pixels FILE.npy names the pixels file explicitly. The pixels of the first batch depend only
on --seed and --batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

# Realistic alt-text / caption lengths, from a handful of tokens to ~40.
CAPTIONS = [
    "a photo of a cat",
    "a dog running on the beach at sunset",
    "two people riding bicycles down a tree-lined street in autumn",
    "close-up of a red apple on a wooden table",
    "an aerial view of a city at night with lights from buildings and traffic",
    "a bowl of ramen with a soft boiled egg, green onions and slices of pork",
    "black and white portrait of an elderly man with a beard",
    "a mountain lake reflecting snow-capped peaks under a clear blue sky",
    "screenshot of a spreadsheet with quarterly sales figures",
    "a child holding a balloon",
    "vintage red car parked in front of a brick building",
    "a plate of sushi",
    "the interior of a modern kitchen with white cabinets, marble countertops and stainless steel appliances",
    "a group of friends laughing around a campfire in the woods at night",
    "logo",
    "a diagram showing the layers of the earth, labelled crust, mantle, outer core and inner core",
    "a woman in a yellow raincoat walking a dog through a park on a rainy day",
    "product photo of wireless headphones on a white background",
    "a herd of elephants crossing a dusty road in the savanna",
    "a cup of coffee with latte art next to a croissant",
    "an old map of europe",
    "a soccer player kicking the ball during a match in a crowded stadium",
    "macro photograph of a bee collecting pollen from a purple flower",
    "a snowy village street decorated with christmas lights",
    "handwritten notes on lined paper",
    "a surfer riding a large wave",
    "a bookshelf full of colourful books in a cosy living room with a reading chair and a lamp",
    "a train passing over a stone bridge in the countryside",
    "a pizza with mushrooms, olives and peppers fresh out of the oven",
    "a sailboat on calm water at dawn",
    "a meme with white text on a picture of a surprised cat",
    "a laboratory with scientists in white coats looking at test tubes",
]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--captions", type=Path, metavar="FILE",
                    help="one caption per line (blank lines skipped), instead of the built-in list")
    ap.add_argument("--text-padding", choices=["max_length", "longest"], default="max_length")
    ap.add_argument("--dump-features", type=Path, metavar="FILE.npy")
    ap.add_argument("--dump-pixels", type=Path, metavar="FILE.npy")
    args = ap.parse_args()
    if min(args.batch, args.images, args.texts, args.threads) < 1:
        ap.error("--batch, --images, --texts and --threads must be >= 1")
    return args


def companion(features: Path, what: str) -> Path:
    """torch-features.npy -> torch-<what>.npy; feats.npy -> feats-<what>.npy."""
    name = features.name
    if "features" in name:
        head, _, tail = name.rpartition("features")
        return features.with_name(f"{head}{what}{tail}")
    stem = name[: -len(".npy")] if name.endswith(".npy") else name
    return features.with_name(f"{stem}-{what}.npy")


def batches(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


def main() -> int:
    args = parse_args()
    # Before torch is imported, so OpenMP/MKL size their pools to the same thread count.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import numpy as np
    import torch
    import transformers
    from transformers import CLIPModel, CLIPTokenizerFast

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    model = CLIPModel.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    tokenizer = CLIPTokenizerFast.from_pretrained(args.model_dir)
    image_size = model.config.vision_config.image_size
    context = model.config.text_config.max_position_embeddings
    eos = model.config.text_config.eos_token_id

    # Inputs, made before timing. Batch 0 doubles as the warm-up and the dumped batch.
    gen = torch.Generator().manual_seed(args.seed)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    image_batches = [
        ((torch.rand(n, 3, image_size, image_size, generator=gen) - mean) / std).contiguous()
        for n in batches(args.images, args.batch)
    ]
    pool = CAPTIONS
    if args.captions:
        pool = [line.strip() for line in args.captions.read_text().splitlines() if line.strip()]
        if not pool:
            raise SystemExit(f"{args.captions}: no captions")
    captions = [pool[i % len(pool)] for i in range(args.texts)]
    text_batches = []
    for i in range(0, args.texts, args.batch):
        enc = tokenizer(
            captions[i : i + args.batch],
            padding="max_length",
            max_length=context,
            truncation=True,
            return_tensors="pt",
        )
        ids = enc["input_ids"]
        if args.text_padding == "longest":
            # Up to and including each caption's end-of-text: the longest decides the width.
            lengths = (ids == eos).int().argmax(dim=1) + 1
            ids = ids[:, : int(lengths.max())].contiguous()
        text_batches.append(ids)
    tokens_per_text = sum(b.shape[0] * b.shape[1] for b in text_batches) / args.texts

    with torch.inference_mode():
        warm_img = model.get_image_features(pixel_values=image_batches[0])
        warm_txt = model.get_text_features(input_ids=text_batches[0])
        # transformers >= 5 may return an output object; the features are its pooler_output.
        warm_img = getattr(warm_img, "pooler_output", warm_img)
        warm_txt = getattr(warm_txt, "pooler_output", warm_txt)

        t0 = time.perf_counter()
        for px in image_batches:
            model.get_image_features(pixel_values=px)
        image_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for ids in text_batches:
            model.get_text_features(input_ids=ids)
        text_s = time.perf_counter() - t0

    if args.dump_features:
        base = args.dump_features
        files = [
            (base, warm_img),
            (args.dump_pixels or companion(base, "pixels"), image_batches[0]),
            (companion(base, "input-ids"), text_batches[0]),
            (companion(base, "text-features"), warm_txt),
        ]
        for path, tensor in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, tensor.detach().cpu().numpy())
            print(f"wrote {path} {list(tensor.shape)} {tensor.dtype}", file=sys.stderr)

    print(json.dumps({
        "tool": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "images": args.images,
        "texts": args.texts,
        "images_per_sec": round(args.images / image_s, 3),
        "texts_per_sec": round(args.texts / text_s, 3),
        "image_seconds": round(image_s, 3),
        "text_seconds": round(text_s, 3),
        "text_padding": args.text_padding,
        "captions": str(args.captions) if args.captions else f"built-in ({len(CAPTIONS)})",
        "tokens_per_text": round(tokens_per_text, 1),
        "image_size": image_size,
        "projection_dim": model.config.projection_dim,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "load_seconds": round(load_s, 2),
        "model_dir": str(args.model_dir),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
