"""longzoo's fast attention against transformers' LongformerSelfAttention, in one run.

For each length (default 1k, 2k, 4k, 8k, 16k tokens; window 512, batch 1, fp32, one
global token) and each implementation — transformers' reference, longzoo's ``sdpa``
backend and its ``flex`` backend (compiled flex_attention; forward only on CPU, where it
has no backward; compilation happens in the warm-up pass and is not timed) — a fresh
process times the forward pass and the forward+backward pass of

* one roberta-base-sized layer's self-attention (hidden 768, 12 heads), and
* a full small model (LongformerForMaskedLM, 4 layers, hidden 256, 4 heads),

and reports the median time of ``--repeat`` runs and the peak memory the timed passes
added (the kernel's high-water mark is reset after the warm-up, then ``VmHWM`` minus the
resident size before the timed passes; CPU).  ``--allocator mmap`` serves large
allocations by mmap so that freed memory leaves the resident set: faithful peaks, slower
times — take times from a default run and peaks from an mmap run.  Ratios are reference / longzoo.

    python benchmarks/attention.py [--lengths 1024 2048 4096 8192 16384] [--repeat 3] [--backends sdpa flex] [--allocator default|mmap]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, time
import torch
from transformers import LongformerConfig, LongformerForMaskedLM
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention
from longzoo.models.attention import FastLongformerSelfAttention

def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) / 1024

target, impl, length, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cls = LongformerSelfAttention if impl == "reference" else FastLongformerSelfAttention

def swap(m):
    m.__class__ = cls
    if impl != "reference":
        m._longzoo_backend = impl
torch.manual_seed(0)
if target == "layer":
    config = LongformerConfig(hidden_size=768, num_attention_heads=12, attention_window=[512], num_hidden_layers=1,
                              attention_probs_dropout_prob=0.0)
    module = LongformerSelfAttention(config, 0)
    swap(module)
    hidden = torch.randn(1, length, 768)
    glob = torch.zeros(1, length, dtype=torch.bool); glob[0, 0] = True
    mask = torch.zeros(1, length); mask[0, 0] = 10000.0
    def step(backward):
        h = hidden.clone().requires_grad_(backward)
        out = module(h, attention_mask=mask, is_index_masked=torch.zeros_like(glob), is_index_global_attn=glob,
                     is_global_attn=True)[0]
        if backward:
            out.sum().backward()
else:
    config = LongformerConfig(hidden_size=256, num_attention_heads=4, intermediate_size=1024, num_hidden_layers=4,
                              attention_window=512, max_position_embeddings=length + 2, vocab_size=30000,
                              attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
    module = LongformerForMaskedLM(config)
    for m in module.modules():
        if isinstance(m, LongformerSelfAttention):
            swap(m)
    ids = torch.randint(5, 30000, (1, length))
    glob = torch.zeros_like(ids); glob[0, 0] = 1
    def step(backward):
        module.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(backward):
            out = module(input_ids=ids, global_attention_mask=glob, labels=ids if backward else None)
            if backward:
                out.loss.backward()
result = {}
modes = (("forward", False), ("forward+backward", True))
if impl == "flex" and not torch.cuda.is_available():
    modes = modes[:1]  # flex_attention has no CPU backward
for mode, backward in modes:
    with torch.set_grad_enabled(backward):
        step(backward)  # warm-up (and compilation)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM: the peak below is the timed passes', not the warm-up's
    before = status("VmRSS")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            step(backward)
        times.append(time.perf_counter() - start)
    result[mode] = {"ms": statistics.median(times) * 1000, "peak_mib": status("VmHWM") - before}
print(json.dumps(result))
"""


def measure(target: str, impl: str, length: int, repeat: int, allocator: str = "default") -> dict | None:
    # glibc keeps freed heap memory resident and reuses it unseen by VmRSS, so a pass that
    # fits into what the warm-up left behind shows a smaller peak than one that does not.
    # Serving every allocation above 64 KiB by mmap returns it on free: the peak then counts
    # the tensors a pass holds at once, comparably at every length.
    # That costs page faults, so times are taken with the default allocator.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)} if allocator == "mmap" else None
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, target, impl, str(length), str(repeat)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        print(
            f"  {target} {impl} {length}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode})"
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["layer", "model"])
    parser.add_argument("--backends", nargs="+", default=["sdpa", "flex"], choices=["sdpa", "flex"])
    parser.add_argument(
        "--allocator", choices=["default", "mmap"], default="default", help="mmap: faithful peaks, slower times"
    )
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1, window 512, one global token")
    for target in args.targets:
        print(
            f"\n### {'one roberta-base-sized self-attention layer' if target == 'layer' else 'LongformerForMaskedLM, 4 layers, hidden 256'}\n"
        )
        print(
            "| tokens | pass | backend | reference ms | longzoo ms | speed-up | reference peak MiB "
            "| longzoo peak MiB | memory ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for length in args.lengths:
            ref = measure(target, "reference", length, args.repeat, args.allocator)
            if not ref:
                continue
            results = {
                backend: measure(target, backend, length, args.repeat, args.allocator) for backend in args.backends
            }
            for mode in ("forward", "forward+backward"):
                r = ref[mode]
                for backend, fast in results.items():
                    if not fast or mode not in fast:
                        continue
                    f = fast[mode]
                    print(
                        f"| {length} | {mode} | {backend} | {r['ms']:.0f} | {f['ms']:.0f} | {r['ms'] / f['ms']:.2f}x | "
                        f"{r['peak_mib']:.0f} | {f['peak_mib']:.0f} | {f['peak_mib'] / max(r['peak_mib'], 1):.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
