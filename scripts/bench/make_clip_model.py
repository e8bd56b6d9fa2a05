#!/usr/bin/env python3
"""Write a random-weight CLIP with the real dimensions of OpenAI's ViT-B/32 or ViT-L/14.

    python scripts/bench/make_clip_model.py OUT_DIR [--size b32|l14] [--seed 0]

Builds `transformers.CLIPModel` from a `CLIPConfig` with exactly the dimensions of
openai/clip-vit-base-patch32 (b32) or openai/clip-vit-large-patch14 (l14), quick_gelu
activations, and weights drawn by transformers' own initialisation from `--seed`. Saves it in
the Hugging Face layout that both `transformers.CLIPModel.from_pretrained` and mmcurate's candle
loader read:

    config.json, model.safetensors        (save_pretrained, safetensors)
    tokenizer.json, tokenizer_config.json (copied from tests/fixtures/clip-tiny: OpenAI's BPE,
                                           the same 49,408-token vocabulary for both sizes)
    preprocessor_config.json              (CLIPImageProcessor, 224 px, OpenAI mean/std)

The weights are random, so scores mean nothing; timings and numerical parity do. Prints the
folder's files with their sizes and sha256, and the tensor names in model.safetensors.
Needs the venv of scripts/bench/requirements-clip.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "clip-tiny"

# Dimensions from the config.json of the Hub checkpoints. Token ids follow OpenAI's tokenizer
# (<|startoftext|> 49406, <|endoftext|> 49407, also used as padding), as in the clip-tiny fixture;
# the Hub's legacy text_config values (bos 0, pad 1, eos 2) are placeholders.
SIZES = {
    "b32": {
        "name": "openai/clip-vit-base-patch32",
        "projection_dim": 512,
        "text": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8),
        "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, patch_size=32),
    },
    "l14": {
        "name": "openai/clip-vit-large-patch14",
        "projection_dim": 768,
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12),
        "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                       num_attention_heads=16, patch_size=14),
    },
}
IMAGE_SIZE = 224
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def clip_config(size: str):
    from transformers import CLIPConfig

    dims = SIZES[size]
    text = dict(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        initializer_range=0.02,
        initializer_factor=1.0,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=dims["projection_dim"],
        **dims["text"],
    )
    vision = dict(
        num_channels=3,
        image_size=IMAGE_SIZE,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        initializer_range=0.02,
        initializer_factor=1.0,
        projection_dim=dims["projection_dim"],
        **dims["vision"],
    )
    return CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=dims["projection_dim"],
        logit_scale_init_value=2.6592,
    )


def candle_tensors(config) -> dict[str, tuple[int, ...]]:
    """The names and shapes candle_transformers::models::clip (0.11) reads, as mmcurate loads it:
    ClipTextTransformer under text_model, ClipVisionTransformer under vision_model, and two
    bias-free projections. logit_scale is optional there (read when present)."""
    t, v, p = config.text_config, config.vision_config, config.projection_dim
    want: dict[str, tuple[int, ...]] = {}

    def layer_norm(prefix: str, d: int) -> None:
        want[f"{prefix}.weight"] = (d,)
        want[f"{prefix}.bias"] = (d,)

    def encoder(prefix: str, d: int, inner: int, layers: int) -> None:
        for i in range(layers):
            lp = f"{prefix}.encoder.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                want[f"{lp}.self_attn.{proj}.weight"] = (d, d)
                want[f"{lp}.self_attn.{proj}.bias"] = (d,)
            layer_norm(f"{lp}.layer_norm1", d)
            layer_norm(f"{lp}.layer_norm2", d)
            want[f"{lp}.mlp.fc1.weight"] = (inner, d)
            want[f"{lp}.mlp.fc1.bias"] = (inner,)
            want[f"{lp}.mlp.fc2.weight"] = (d, inner)
            want[f"{lp}.mlp.fc2.bias"] = (d,)

    d = t.hidden_size
    want["text_model.embeddings.token_embedding.weight"] = (t.vocab_size, d)
    want["text_model.embeddings.position_embedding.weight"] = (t.max_position_embeddings, d)
    encoder("text_model", d, t.intermediate_size, t.num_hidden_layers)
    layer_norm("text_model.final_layer_norm", d)

    d = v.hidden_size
    positions = (v.image_size // v.patch_size) ** 2 + 1
    want["vision_model.embeddings.class_embedding"] = (d,)
    want["vision_model.embeddings.position_embedding.weight"] = (positions, d)
    want["vision_model.embeddings.patch_embedding.weight"] = (d, v.num_channels, v.patch_size, v.patch_size)
    layer_norm("vision_model.pre_layrnorm", d)
    encoder("vision_model", d, v.intermediate_size, v.num_hidden_layers)
    layer_norm("vision_model.post_layernorm", d)

    want["visual_projection.weight"] = (p, v.hidden_size)
    want["text_projection.weight"] = (p, t.hidden_size)
    want["logit_scale"] = ()
    return want


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), default="b32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list-tensors", action="store_true",
                    help="print every tensor name and shape in model.safetensors")
    args = ap.parse_args()

    import torch
    from safetensors import safe_open
    from transformers import CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    config = clip_config(args.size)
    model = CLIPModel(config).to(torch.float32).eval()
    # Check the dimensions against the real checkpoint's parameter count.
    n_params = sum(p.numel() for p in model.parameters())

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors*"):
        stale.unlink()
    model.save_pretrained(out)  # transformers >= 5 always writes model.safetensors
    weights = out / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"save_pretrained wrote no {weights} (sharded?): {sorted(p.name for p in out.iterdir())}")

    weights.chmod(0o644)  # save_pretrained leaves it 0600
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(FIXTURE / name, out / name)
    preprocessor = {
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": MEAN,
        "image_std": STD,
        "image_processor_type": "CLIPImageProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": IMAGE_SIZE},
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    provenance = {
        "dimensions_of": SIZES[args.size]["name"],
        "size": args.size,
        "seed": args.seed,
        "weights": "random (transformers CLIPModel initialisation after torch.manual_seed(seed))",
        "parameters": n_params,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    (out / "random_weights.json").write_text(json.dumps(provenance, indent=2) + "\n")

    with safe_open(str(weights), framework="np") as f:
        names = sorted(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
        dtypes = {str(f.get_slice(k).get_dtype()) for k in names}
    want = candle_tensors(config)
    missing = sorted(set(want) - set(shapes))
    wrong = sorted(k for k in want if k in shapes and shapes[k] != want[k])
    extra = sorted(set(shapes) - set(want))
    if missing or wrong or dtypes != {"F32"}:
        raise SystemExit(
            f"model.safetensors does not match candle's CLIP loader: missing {missing[:10]}, "
            f"wrong shapes {[(k, shapes[k], want[k]) for k in wrong[:10]]}, dtypes {dtypes}")
    print(f"{SIZES[args.size]['name']} dimensions, seed {args.seed}: "
          f"{n_params:,} parameters, {len(names)} tensors ({', '.join(sorted(dtypes))})")
    print(f"{out}/")
    for p in sorted(out.iterdir()):
        print(f"  {p.name:28s} {p.stat().st_size:>12,d}  sha256 {sha256(p)}")
    print(f"candle's CLIP loader: all {len(want)} tensors it reads are present with the right "
          f"shapes; {len(extra)} other tensors{': ' + ', '.join(extra) if extra else ''}")
    if args.list_tensors:
        print("tensors in model.safetensors:")
        for k in names:
            print(f"  {k} {list(shapes[k])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
