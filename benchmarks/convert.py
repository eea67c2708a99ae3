"""Conversion cost against a plain load + save of the same checkpoint, in one run.

Builds a roberta-base-sized random RobertaForMaskedLM (~125M parameters) locally,
then times, each in a fresh process and ``--repeat`` times:

* reference: ``AutoModelForMaskedLM.from_pretrained`` + ``save_pretrained``;
* longzoo:   ``longzoo.convert(..., max_pos=4096, verify=False)``;
* longzoo with the parity check and the full-length run (reported, not targeted).

Targets (issue 2): convert time <= 1.5x load+save; peak RSS <= 2.5x output file size.

    python benchmarks/convert.py [--repeat 3] [--max-pos 4096] [--skip-verify]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Child processes report their own peak RSS and work time.  Peak RSS is VmHWM from
# /proc: ru_maxrss survives exec on Linux and would report the parent's peak instead.
_PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
REFERENCE = r"""
import json, sys, time
t = time.perf_counter()
from transformers import AutoModelForMaskedLM, AutoTokenizer
m = AutoModelForMaskedLM.from_pretrained(sys.argv[1])
m.save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])
print(json.dumps({"work_s": time.perf_counter() - t, "rss_kib": PEAK}))
"""

LONGZOO = r"""
import json, sys, time
t = time.perf_counter()
import longzoo
longzoo.convert(sys.argv[1], int(sys.argv[3]), sys.argv[2], verify=sys.argv[4] == "1")
print(json.dumps({"work_s": time.perf_counter() - t, "rss_kib": PEAK}))
"""


def build_base(folder: Path) -> None:
    """A random roberta-base-sized MLM with a small real BPE tokenizer."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    from longzoo.converters.sample_text import TEXTS

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(TEXTS), vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model_json["merges"]]
    tokenizer = RobertaTokenizer(vocab=model_json["vocab"], merges=merges)
    tokenizer.model_max_length = 512
    config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def run_child(code: str, *args: str) -> dict:
    start = time.perf_counter()
    code = code.replace("PEAK", _PEAK)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def measure(code: str, base: Path, scratch: Path, repeat: int, *extra: str) -> dict:
    runs = []
    for i in range(repeat):
        out = scratch / f"out-{time.monotonic_ns()}-{i}"
        runs.append(run_child(code, str(base), str(out), *extra))
        size = (out / "model.safetensors").stat().st_size
        subprocess.run(["rm", "-rf", str(out)], check=True)
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "work_s": statistics.median(r["work_s"] for r in runs),
        "rss_mib": max(r["rss_kib"] for r in runs) / 1024,
        "file_mib": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-pos", type=int, default=4096)
    parser.add_argument("--skip-verify", action="store_true", help="do not time the run with the parity check")
    parser.add_argument("--build-base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_base:
        build_base(args.build_base)
        return

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base = scratch / "roberta-base-random"
        # built in a child so that this process stays small while it measures others
        subprocess.run([sys.executable, __file__, "--build-base", str(base)], check=True)
        params_m = (base / "model.safetensors").stat().st_size / 4 / 1e6
        print(f"base: random roberta-base-sized MLM, {params_m:.0f}M parameters, torch threads {os.cpu_count()}")
        ref = measure(REFERENCE, base, scratch, args.repeat)
        conv = measure(LONGZOO, base, scratch, args.repeat, str(args.max_pos), "0")
        rows = [("load + save (reference)", ref), (f"longzoo convert to {args.max_pos}, --no-verify", conv)]
        if not args.skip_verify:
            rows.append(
                (
                    f"longzoo convert to {args.max_pos}, with parity + full-length run",
                    measure(LONGZOO, base, scratch, 1, str(args.max_pos), "1"),
                )
            )

    print()
    print("| run | process wall s | work s | x reference (wall) | peak RSS MiB | output MiB | RSS / output |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['wall_s']:.1f} | {r['work_s']:.1f} | {r['wall_s'] / ref['wall_s']:.2f} | "
            f"{r['rss_mib']:.0f} | {r['file_mib']:.0f} | {r['rss_mib'] / r['file_mib']:.2f} |"
        )
    time_ratio = conv["wall_s"] / ref["wall_s"]
    rss_ratio = conv["rss_mib"] / conv["file_mib"]
    print()
    print(f"target time <= 1.5x load+save: {time_ratio:.2f}x -> {'met' if time_ratio <= 1.5 else 'NOT met'}")
    print(f"target peak RSS <= 2.5x output: {rss_ratio:.2f}x -> {'met' if rss_ratio <= 2.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
