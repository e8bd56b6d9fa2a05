#!/usr/bin/env python3
"""The summary of scripts/gpu/bench_e2e.sh: reads its scratch folder (steps.tsv, each step's
output, mmcurate's manifests, the PyTorch peer's JSON, nvidia-smi's samples) and prints the
tables as Markdown on stdout; writes every number to RESULTS/results.json. Standard library only.

    python3 scripts/gpu/bench_summary.py --work DIR --results DIR --count N --device cuda
        --dtype bf16 --batch 256 --sizes "b32 l14" --semantic 0 [--media DIR]

What the columns mean (docs/benchmarks.md, "GPU end to end"):
- e2e s: mmcurate, the sum of the manifest's stage_seconds (plan, which includes the device,
  kernel and model setup, then measure, embed, decide, write); PyTorch, model load and CUDA
  setup, the batch loop and dedup (not the interpreter's imports).
- w/o setup: the same less mmcurate's plan stage, less the peer's setup.
- wall s: the whole process as the shell saw it (imports, manifest writing included).
- peak GPU MiB / util %: nvidia-smi's memory.used maximum and utilization.gpu mean over the
  step (sampled every 200 ms; the card's whole memory in use, not only the process's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from pathlib import Path

TARGET_B32 = 3000.0  # images/s per H100 end to end with ViT-B/32 (issue 5)


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_json_line(path: Path):
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def steps(work: Path) -> dict:
    out = {}
    try:
        text = (work / "steps.tsv").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 5:
            continue
        name, rc, start, end, limit = parts[:5]
        out[name] = {"rc": rc, "start": float(start or 0), "end": float(end or 0),
                     "limit_s": float(limit or 0)}
        out[name]["seconds"] = out[name]["end"] - out[name]["start"]
    return out


def smi_samples(path: Path) -> list[tuple[float, float, float]]:
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            rows.append((t, float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return rows


def gpu_during(samples, step) -> dict:
    if not step or not samples:
        return {}
    inside = [s for s in samples if step["start"] <= s[0] <= step["end"]]
    if not inside:
        return {}
    return {"peak_memory_mib": max(s[1] for s in inside),
            "mean_utilization_pct": round(sum(s[2] for s in inside) / len(inside), 1),
            "samples": len(inside)}


def fmt(v, digits=2, missing="-"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return missing
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,d}"
    return str(v)


def rate(n, seconds):
    return n / seconds if n and seconds and seconds > 0 else None


def fmt_rate(v):
    """images/s: whole numbers from 100 up, more digits below (the CPU dry run)."""
    if v is None:
        return "-"
    return fmt(float(v), 0 if v >= 100 else 1 if v >= 10 else 2)


def status(step) -> str:
    if step is None:
        return "not run"
    rc = step["rc"]
    if rc == "skipped":
        return "skipped (deadline)"
    if rc in ("124", "137"):
        return f"TIMEOUT ({step['limit_s']:.0f} s)"
    return "ok" if rc == "0" else f"FAILED ({rc})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sizes", default="b32 l14")
    ap.add_argument("--semantic", default="0")
    ap.add_argument("--media", default="")
    args = ap.parse_args()
    work, results = args.work, args.results
    sizes = args.sizes.split()
    st = steps(work)
    samples = smi_samples(results / "smi.csv")
    corpus = last_json_line(work / "steps" / "corpus.out") or {}
    version = (work / "version").read_text().strip() if (work / "version").exists() else "?"
    torch_line = (work / "torch.check").read_text().strip().splitlines()[-1:] if (work / "torch.check").exists() else []

    rows, mm_stages, pt_stages, record = [], [], [], {"runs": {}}
    gpu_name = None
    for s in sizes:
        name = f"mmcurate-{s}"
        step = st.get(name)
        m = load_json(work / "steps" / f"{name}.manifest.json") if step else None
        gpu = gpu_during(samples, step)
        entry = {"step": step, "gpu": gpu, "manifest": m}
        if step is None:
            rows.append([f"mmcurate {s}", "not run"] + ["-"] * 8)
        else:
            if m and (step["rc"] == "0"):
                stages = m.get("stage_seconds", {})
                n = m.get("counts", {}).get("samples")
                e2e = sum(stages.values())
                setup = stages.get("plan", 0.0)
                clip = (m.get("models") or {}).get("clip") or {}
                embedded = sum(f.get("rows", 0) for f in m.get("embeddings", []))
                entry.update(images=n, e2e_s=e2e, images_per_sec=rate(n, e2e),
                             images_per_sec_without_setup=rate(n, e2e - setup))
                rows.append([f"mmcurate {s}", status(step), fmt(n), fmt(m.get("counts", {}).get("kept")),
                             fmt(step["seconds"]), fmt(e2e), fmt_rate(rate(n, e2e)),
                             fmt_rate(rate(n, e2e - setup)), fmt(gpu.get("peak_memory_mib"), 0),
                             fmt(gpu.get("mean_utilization_pct"), 0)])
                mm_stages.append([f"mmcurate {s}"] + [fmt(stages.get(k)) for k in
                                  ("plan", "measure", "embed", "decide", "write")] +
                                 [fmt_rate(rate(n, stages.get("measure"))),
                                  fmt_rate(rate(embedded, stages.get("embed"))),
                                  str(m.get("run", {}).get("jpeg_decoder", "-")),
                                  f"{clip.get('device', '-')} {clip.get('dtype', '')}".strip(),
                                  fmt(m.get("counts", {}).get("dropped_by_reason", {}).get("exact_duplicate", 0)),
                                  fmt(m.get("counts", {}).get("dropped_by_reason", {}).get("near_duplicate", 0)),
                                  fmt(m.get("counts", {}).get("dropped_by_reason", {}).get("semantic_duplicate", 0))])
            else:
                rows.append([f"mmcurate {s}", status(step), "-", "-", fmt(step["seconds"]), "-", "-", "-",
                             fmt(gpu.get("peak_memory_mib"), 0), fmt(gpu.get("mean_utilization_pct"), 0)])
        record["runs"][name] = entry

        name = f"pytorch-{s}"
        step = st.get(name)
        p = load_json(work / "steps" / f"{name}.json") if step else None
        gpu = gpu_during(samples, step)
        entry = {"step": step, "gpu": gpu, "result": p}
        if step is None:
            rows.append([f"pytorch {s}", "not run"] + ["-"] * 8)
        else:
            if p and step["rc"] == "0":
                gpu_name = gpu_name or p.get("gpu")
                secs, stages = p.get("seconds", {}), p.get("stage_seconds", {})
                n = p.get("images")
                entry.update(images=n, e2e_s=secs.get("e2e"), images_per_sec=rate(n, secs.get("e2e")),
                             images_per_sec_without_setup=rate(n, secs.get("loop")))
                rows.append([f"pytorch {s}", status(step), fmt(n), fmt(p.get("dedup", {}).get("kept")),
                             fmt(step["seconds"]), fmt(secs.get("e2e")), fmt_rate(rate(n, secs.get("e2e"))),
                             fmt_rate(rate(n, secs.get("loop"))), fmt(gpu.get("peak_memory_mib"), 0),
                             fmt(gpu.get("mean_utilization_pct"), 0)])
                d = p.get("dedup", {})
                pt_stages.append([f"pytorch {s}", fmt(secs.get("setup"))] + [fmt(stages.get(k)) for k in
                                  ("read_wait", "decode", "quality", "preprocess", "model_image",
                                   "model_text", "dedup")] +
                                 [fmt(p.get("read_busy_s")), fmt(p.get("peak_gpu_memory_mib")),
                                  f"{d.get('exact', '-')}/{d.get('near', '-')}/{d.get('semantic', '-')}"])
            else:
                rows.append([f"pytorch {s}", status(step), "-", "-", fmt(step["seconds"]), "-", "-", "-",
                             fmt(gpu.get("peak_memory_mib"), 0), fmt(gpu.get("mean_utilization_pct"), 0)])
        record["runs"][name] = entry

    out = []
    semantic = "off" if float(args.semantic or 0) <= 0 else f"cosine >= {args.semantic}"
    out.append(f"## GPU end to end: {gpu_name or args.device}, {fmt(corpus.get('count', args.count))} JPEGs")
    out.append("")
    if corpus:
        out.append(f"corpus: {corpus.get('total_bytes', 0) / 1e6:,.0f} MB, longer side p5/p50/p95 "
                   f"{'/'.join(str(v) for v in corpus.get('longer_side', {}).values())} px, mean "
                   f"{corpus.get('mean_megapixels')} MP, {corpus.get('exact_duplicates')} exact + "
                   f"{corpus.get('near_duplicates')} near copies; made in {corpus.get('seconds')} s "
                   f"({corpus.get('procs')} processes)")
    out.append(f"settings: dtype {args.dtype}, batch {args.batch}, run.device {args.device}, "
               f"gpu_jpeg_decode {'true' if args.device.startswith('cuda') else 'false'}, dedup exact + "
               f"pHash <= 4 bits, semantic {semantic}; random-weight CLIP (scripts/bench/make_clip_model.py)")
    out.append(f"mmcurate: {version}; {'; '.join(torch_line)}")
    out.append("")
    out.append("| run | status | images | kept | wall s | e2e s | images/s e2e | images/s w/o setup | peak GPU MiB | GPU util % |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    if mm_stages:
        out.append("")
        out.append("mmcurate, manifest stage_seconds (plan includes CUDA, NVRTC and model setup):")
        out.append("")
        out.append("| run | plan | measure | embed | decide | write | measure images/s | embed images/s | JPEG decoder | CLIP | exact | near | semantic |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        out += ["| " + " | ".join(r) + " |" for r in mm_stages]
    busy = {s: ((record["runs"].get(f"mmcurate-{s}", {}).get("manifest") or {}).get("gpu_busy_seconds") or {})
            for s in sizes}
    keys = sorted({k for v in busy.values() for k in v})
    if keys:
        out.append("")
        out.append("mmcurate, manifest gpu_busy_seconds (the GPU's busy time per stage and step; nvJPEG's summed over concurrent decodes):")
        out.append("")
        out.append("| run | " + " | ".join(keys) + " |")
        out.append("|---|" + "---|" * len(keys))
        out += [f"| mmcurate {s} | " + " | ".join(fmt(busy[s].get(k)) for k in keys) + " |"
                for s in sizes if busy[s]]
    if pt_stages:
        out.append("")
        clock = "CUDA events: the GPU timeline split by stage" if args.device.startswith("cuda") else "wall clock"
        out.append(f"PyTorch peer, seconds per stage ({clock}; read busy is the reader threads' summed time):")
        out.append("")
        out.append("| run | setup | read wait | decode | quality | preprocess | image model | text model | dedup | read busy | peak allocated MiB | exact/near/semantic |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        out += ["| " + " | ".join(r) + " |" for r in pt_stages]
    out.append("")
    for s in sizes:
        a = record["runs"].get(f"mmcurate-{s}", {}).get("images_per_sec")
        b = record["runs"].get(f"pytorch-{s}", {}).get("images_per_sec")
        line = f"{s}: mmcurate {fmt_rate(a)} vs PyTorch {fmt_rate(b)} images/s end to end"
        if a and b:
            line += f": {a / b:.2f}x"
            record["runs"][f"ratio-{s}"] = a / b
        if s == "b32" and args.device.startswith("cuda"):
            line += f"; target {TARGET_B32:,.0f}/s: " + ("met" if a and a >= TARGET_B32 else "NOT met")
        out.append(line)
    others = {k: v for k, v in st.items() if not k.startswith(("mmcurate-", "pytorch-"))}
    out.append("other steps: " + ", ".join(f"{k} {status(v)} {v['seconds']:.1f} s" for k, v in others.items()))
    text = "\n".join(out)
    print(text)
    record.update(corpus=corpus, steps=st, settings=vars(args) | {"work": str(work), "results": str(results)},
                  mmcurate_version=version, torch=torch_line, smi_samples=len(samples))
    (results / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
