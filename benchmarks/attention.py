"""longzoo's fast attention against transformers' LongformerSelfAttention and full attention, in one run.

For each length (default 1k, 2k, 4k, 8k, 16k tokens; batch 1, fp32) and each
implementation (``--impls``, default all four) a fresh process times the forward pass and
the forward+backward pass of one ``--targets`` entry:

* ``reference``: transformers' ``LongformerSelfAttention`` (window 512, one global token);
* ``sdpa``: longzoo's blocked band attention backend (same window and global token);
* ``flex``: longzoo's compiled flex_attention backend (forward only on CPU, where it has no
  backward; compilation happens in the warm-up pass and is not timed);
* ``full``: full attention with extended absolute positions, i.e. the stock BERT
  architecture with transformers' SDPA attention (``attn_implementation="sdpa"``) over all
  L tokens: no band, no global token, no padding, attention mask None, dropout 0, so
  torch's fused CPU flash-attention kernel serves the forward and the backward.

Targets:

* ``layer``: one roberta-base-sized self-attention (hidden 768, 12 heads).  Timed: the
  q/k/v projections and the attention, not the output projection (``*SelfOutput``) —
  ``LongformerSelfAttention`` for reference/sdpa/flex (plus its global q/k/v projections
  for the one global token), ``BertSelfAttention`` for full.  Backward: ``out.sum()``.
* ``model``: a small masked-LM model, ``LongformerForMaskedLM`` (4 layers, hidden 256,
  4 heads, intermediate 1024, vocabulary 30k) for reference/sdpa/flex and
  ``BertForMaskedLM`` of the same sizes (``max_position_embeddings`` = length) for full;
  backward: the MLM loss with labels on every token.

Each child checks, in its untimed warm-up, that the outputs (forward) and the loss or input
gradient (forward+backward) are finite, and fails otherwise.

Reported: the median time of ``--repeat`` runs and the peak memory the timed passes added
(the kernel's high-water mark is reset after the warm-up, then ``VmHWM`` minus the resident
size before the timed passes; CPU).  ``--allocator mmap`` serves large allocations by mmap
so that freed memory leaves the resident set: faithful peaks, slower times — take times
from a default run and peaks from an mmap run.  Every implementation is compared with the
reference: speed-up = reference ms / impl ms, memory ratio = impl peak / reference peak.
A second table per target ranks the implementations per (length, pass) by time and by
peak memory, winner first.  ``--json PATH`` also writes every measurement as JSON.

    python benchmarks/attention.py [--lengths 1024 2048 4096 8192 16384] [--repeat 3]
        [--impls reference sdpa flex full] [--targets layer model] [--allocator default|mmap] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

IMPLS = ["reference", "sdpa", "flex", "full"]
MODES = ("forward", "forward+backward")

CHILD = r"""
import json, statistics, sys, time
import torch

def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) / 1024

target, impl, length, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
if impl == "full":
    # Full attention with extended absolute positions: stock BERT, transformers' SDPA over all L tokens.
    from transformers import BertConfig, BertForMaskedLM
    from transformers.models.bert.modeling_bert import BertSelfAttention
    if target == "layer":
        config = BertConfig(hidden_size=768, num_attention_heads=12, num_hidden_layers=1,
                            attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
        module = BertSelfAttention(config)  # q/k/v projections + attention, like LongformerSelfAttention
        hidden = torch.randn(1, length, 768)
        def step(backward):
            h = hidden.clone().requires_grad_(backward)
            out = module(h, attention_mask=None)[0]
            if backward:
                out.sum().backward()
                return (out, h.grad)
            return (out,)
    else:
        config = BertConfig(hidden_size=256, num_attention_heads=4, intermediate_size=1024, num_hidden_layers=4,
                            max_position_embeddings=length, vocab_size=30000, attention_probs_dropout_prob=0.0,
                            hidden_dropout_prob=0.0, attn_implementation="sdpa")
        module = BertForMaskedLM(config)
        ids = torch.randint(5, 30000, (1, length))
        def step(backward):
            module.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(backward):
                out = module(input_ids=ids, labels=ids if backward else None)
                if backward:
                    out.loss.backward()
                    return (out.loss,)
            return (out.logits,)
else:
    from transformers import LongformerConfig, LongformerForMaskedLM
    from transformers.models.longformer.modeling_longformer import LongformerSelfAttention
    from longzoo.models.attention import FastLongformerSelfAttention
    cls = LongformerSelfAttention if impl == "reference" else FastLongformerSelfAttention

    def swap(m):
        m.__class__ = cls
        if impl != "reference":
            m._longzoo_backend = impl
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
                return (out, h.grad)
            return (out,)
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
                    return (out.loss,)
            return (out.logits,)
result = {}
modes = (("forward", False), ("forward+backward", True))
if impl == "flex" and not torch.cuda.is_available():
    modes = modes[:1]  # flex_attention has no CPU backward
for mode, backward in modes:
    with torch.set_grad_enabled(backward):
        checks = step(backward)  # warm-up (and compilation)
    # Sanity: a sum is NaN/inf iff some element is (barring overflow), and needs no big temporary.
    assert all(t is not None and torch.isfinite(t.detach().sum()) for t in checks), (
        f"{impl} {target} {length} {mode}: non-finite output")
    del checks
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

HEADINGS = {
    "layer": "one roberta-base-sized self-attention layer (hidden 768, 12 heads; q/k/v projections + attention; "
    "full: BertSelfAttention)",
    "model": "small masked-LM model, 4 layers, hidden 256 (LongformerForMaskedLM; full: BertForMaskedLM)",
}


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
            f"  {target} {impl} {length}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode})",
            flush=True,
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ranking(results: dict, mode: str, key: str) -> str:
    """'sdpa 60 < full 90 < reference 145': the implementations measured for `mode`, best first."""
    measured = sorted((r[mode][key], impl) for impl, r in results.items() if r and mode in r)
    return " < ".join(f"{impl} {value:.0f}" for value, impl in measured) or "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["layer", "model"], choices=["layer", "model"])
    parser.add_argument(
        "--impls",
        "--backends",
        dest="impls",
        nargs="+",
        default=IMPLS,
        choices=IMPLS,
        help="implementations to time (--backends: the former name); ratios need reference",
    )
    parser.add_argument(
        "--allocator", choices=["default", "mmap"], default="default", help="mmap: faithful peaks, slower times"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to PATH as JSON")
    args = parser.parse_args()
    impls = list(dict.fromkeys(args.impls))
    # Rows compare each implementation with the reference; reference alone gets its own rows.
    row_impls = [impl for impl in impls if impl != "reference"] or ["reference"]
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1; "
        "reference/sdpa/flex: window 512, one global token; full: SDPA over all tokens, no mask"
    )
    records = []
    for target in args.targets:
        print(f"\n### {HEADINGS[target]}\n")
        print(
            "| tokens | pass | impl | reference ms | impl ms | speed-up | reference peak MiB "
            "| impl peak MiB | memory ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        winners = []
        for length in args.lengths:
            results = {impl: measure(target, impl, length, args.repeat, args.allocator) for impl in impls}
            for impl, result in results.items():
                for mode, m in (result or {}).items():
                    records.append({"target": target, "impl": impl, "tokens": length, "pass": mode, **m})
            ref = results.get("reference")
            for mode in MODES:
                r = ref[mode] if ref and mode in ref else None
                for impl in row_impls:
                    fast = results[impl]
                    if not fast or mode not in fast:
                        continue
                    f = fast[mode]
                    cells = (
                        [f"{r['ms']:.0f}", f"{f['ms']:.0f}", f"{r['ms'] / f['ms']:.2f}x", f"{r['peak_mib']:.0f}"]
                        if r
                        else ["—", f"{f['ms']:.0f}", "—", "—"]
                    )
                    cells += [f"{f['peak_mib']:.0f}", f"{f['peak_mib'] / max(r['peak_mib'], 1):.2f}" if r else "—"]
                    print(f"| {length} | {mode} | {impl} | {' | '.join(cells)} |", flush=True)
                winners.append((length, mode, ranking(results, mode, "ms"), ranking(results, mode, "peak_mib")))
        print("\nWinners (best first):\n")
        print("| tokens | pass | time, ms | peak, MiB |")
        print("|---|---|---|---|")
        for length, mode, by_time, by_peak in winners:
            print(f"| {length} | {mode} | {by_time} | {by_peak} |", flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeat": args.repeat}
        with open(args.json, "w") as f:
            json.dump({**meta, "allocator": args.allocator, "results": records}, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
