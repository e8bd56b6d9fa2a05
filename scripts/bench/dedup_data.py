"""Embedding-like 512-d unit vectors with planted near copies, for scripts/bench/dedup_compare.sh.

Like CLIP image embeddings: a shared mean direction (a quarter of the squared norm), 32 latent
factors (55%) and isotropic noise (20%), so unrelated pairs have cosine about 0.25 and nearest
neighbours about 0.7. About 8% of the rows are near copies of an original in the same block of
rows: the original plus isotropic noise of relative size 0.05 to 0.5 (cosine 0.999 down to
0.89), so some copies fall below a 0.95 threshold. Seeded; written block by block into a
float32 or float16 .npy (the header, then the blocks appended), so 10M rows need little memory
(one block of 100,000 rows at a time).

usage: python dedup_data.py ROWS OUT.npy [--seed S] [--dim D] [--dtype float16] [--uniform-noise]

--uniform-noise draws the isotropic noise as uniform int8 values scaled to unit variance instead
of normals (8x cheaper; used for 10M rows on a busy 2-core machine); the rest is the same.
"""

import argparse

import numpy as np

LATENT = 32
BLOCK = 100_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--copy-share", type=float, default=0.08)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--uniform-noise", action="store_true")
    args = parser.parse_args()
    dim = args.dim
    rng = np.random.default_rng(args.seed)
    mean = rng.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    factors = (rng.standard_normal((LATENT, dim)) / np.sqrt(dim)).astype(np.float32)
    out = open(args.out, "wb")
    header = {"descr": np.dtype(args.dtype).str, "fortran_order": False, "shape": (args.rows, dim)}
    np.lib.format.write_array_header_1_0(out, header)
    copies = 0
    for start in range(0, args.rows, BLOCK):
        n = min(BLOCK, args.rows - start)
        block_rng = np.random.default_rng([args.seed, start])
        latent = block_rng.standard_normal((n, LATENT)).astype(np.float32)
        if args.uniform_noise:
            # Uniform on -128..127: variance (256^2 - 1) / 12, mean -0.5.
            noise = block_rng.integers(-128, 128, (n, dim), dtype=np.int8).astype(np.float32)
            noise += 0.5
            noise *= np.float32(1 / np.sqrt((256**2 - 1) / 12))
        else:
            noise = block_rng.standard_normal((n, dim)).astype(np.float32)
        x = (
            np.sqrt(0.25) * mean
            + np.sqrt(0.55 / LATENT) * latent @ factors
            + np.sqrt(0.20 / dim) * noise
        )
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        is_copy = block_rng.random(n) < args.copy_share
        is_copy[0] = False
        originals = np.flatnonzero(~is_copy)
        targets = np.flatnonzero(is_copy)
        sources = originals[block_rng.integers(0, len(originals), len(targets))]
        size = block_rng.uniform(0.05, 0.5, len(targets)).astype(np.float32)
        jitter = block_rng.standard_normal((len(targets), dim)).astype(np.float32)
        y = x[sources] + (size / np.sqrt(dim))[:, None] * jitter
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        x[targets] = y
        copies += len(targets)
        out.write(np.ascontiguousarray(x, dtype=args.dtype).tobytes())
    out.close()
    print(f"{args.out}: {args.rows} x {dim} {args.dtype}, {copies} planted near copies")


if __name__ == "__main__":
    main()
