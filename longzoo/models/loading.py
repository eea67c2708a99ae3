"""Loading long models as stock transformers classes, with sensible global attention.

``load(id_or_dir, task)`` returns a plain transformers model for the task: a Longformer,
or the base's own architecture for a full-attention model (``convert --attention full``),
which runs on transformers' SDPA attention.  A folder or Hub id holding a long model in a
foreign layout (Longformer_ZH, ``RobertaLong``) is first rewritten as a stock Longformer
by the converter (cached, parity-checked).

Longformer task heads get a forward pre-hook that fills ``global_attention_mask`` when the caller
gives none: the first token for classification and tagging; the first token and the
question (everything up to the first separator) for question answering and multiple
choice.  transformers' own QA default counts three separators (RoBERTa's
``<s> q </s></s> c </s>``) and fails on BERT-style ``[CLS] q [SEP] c [SEP]`` inputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from longzoo.converters.adapters import FULL_ATTENTION_IMPLEMENTATION
from longzoo.errors import LongzooError
from longzoo.weights import complete_mlm_head, require_finite

TASKS = {
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
    "feature-extraction": "AutoModel",
}
_QUESTION_TASKS = ("question-answering", "multiple-choice")


def stock_folder(id_or_dir: str | Path, *, revision: str | None = None, allow_pickle: bool = False) -> Path | str:
    """A folder or Hub id that stock transformers can load as a long model.

    Stock Longformer and full-attention checkpoints pass through unchanged.  A foreign long
    layout is converted once into ``~/.cache/longzoo/stock/<hash>`` and that folder is returned.
    """
    from longzoo.converters.source import resolve_base
    from longzoo.models.folders import attention_form, model_config

    source = resolve_base(str(id_or_dir), revision=revision, allow_pickle=allow_pickle)
    config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    if "attention_window" not in config and config.get("model_type") != "longformer":
        if attention_form(model_config(source.path), source.path) is None:
            raise LongzooError(
                f"{id_or_dir}: a short {config.get('model_type')} model; convert it first (`longzoo convert --base ...`)"
            )
        return source.path
    if config.get("model_type") == "longformer":
        return source.path
    from longzoo.converters import convert

    digest = hashlib.sha256(f"{source.path.resolve()}|{source.revision}".encode()).hexdigest()[:16]
    target = Path.home() / ".cache" / "longzoo" / "stock" / digest
    if not (target / "model.safetensors").is_file():
        convert(str(source.path), out=target, force=True, allow_pickle=allow_pickle)
    return target


def load(
    id_or_dir: str | Path,
    task: str = "masked-lm",
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    fast_attention: bool | str = False,
    **kwargs,
):
    """A stock transformers model for ``task`` (see :data:`TASKS`), from any long layout.

    For a Longformer, ``fast_attention=True`` computes attention with
    :func:`longzoo.use_fast_attention` (same numbers, same parameters); a backend name
    (``"auto"``, ``"sdpa"``, ``"flex"``) picks the backend.  A full-attention model runs on
    transformers' SDPA attention unless ``attn_implementation`` says otherwise, and
    ``fast_attention`` does not apply to it.  ``kwargs`` go to ``from_pretrained``
    (``num_labels=...``, ``dtype=...``).
    """
    import transformers

    if task not in TASKS:
        raise LongzooError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    folder = stock_folder(id_or_dir, revision=revision, allow_pickle=allow_pickle)
    longformer = transformers.AutoConfig.from_pretrained(folder).model_type == "longformer"
    if not longformer:
        kwargs.setdefault("attn_implementation", FULL_ATTENTION_IMPLEMENTATION)
    model, info = getattr(transformers, TASKS[task]).from_pretrained(folder, output_loading_info=True, **kwargs)
    if task == "masked-lm":
        complete_mlm_head(model, info["missing_keys"])  # an encoder-only folder has none yet
    require_finite(model, str(id_or_dir))
    if fast_attention and longformer:
        from longzoo.models.attention import use_fast_attention

        use_fast_attention(model, backend="auto" if fast_attention is True else fast_attention)
    if longformer and task not in ("masked-lm", "feature-extraction"):
        attach_global_attention(model, task)
    return model


def load_tokenizer(id_or_dir: str | Path, *, revision: str | None = None, allow_pickle: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(stock_folder(id_or_dir, revision=revision, allow_pickle=allow_pickle))


def global_attention_mask(input_ids, task: str, sep_token_id: int):
    """1 on the tokens that should see and be seen by all: the first token, plus the
    question (up to and including the first separator) for QA and multiple choice."""
    import torch

    mask = torch.zeros_like(input_ids)
    mask[..., 0] = 1
    if task in _QUESTION_TASKS:
        is_sep = input_ids == sep_token_id
        # index of the first separator in each row (the whole row when there is none)
        first = torch.where(is_sep.any(-1), is_sep.int().argmax(-1), input_ids.shape[-1] - 1)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        mask = (positions <= first.unsqueeze(-1)).to(input_ids.dtype)
    return mask


def attach_global_attention(model, task: str):
    """Fill ``global_attention_mask`` on every call that has none; returns the hook handle."""
    sep = model.config.sep_token_id

    def hook(module, args, kwargs):
        if kwargs.get("global_attention_mask") is not None:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return None
        kwargs["global_attention_mask"] = global_attention_mask(input_ids, task, sep)
        return args, kwargs

    return model.register_forward_pre_hook(hook, with_kwargs=True)


class LongformerZh:
    """Chinese long models: a BERT vocabulary in a stock Longformer (or a full-attention BERT).

    ``LongformerZh.from_pretrained(id_or_dir)`` returns a ``LongformerForMaskedLM`` (a
    ``BertForMaskedLM`` for a full-attention model);
    ``LongformerZh.tokenizer(id_or_dir)`` its BERT tokenizer; ``for_<task>`` the task
    heads with Chinese-friendly default global attention.
    """

    @staticmethod
    def from_pretrained(id_or_dir, **kwargs):
        return load(id_or_dir, "masked-lm", **kwargs)

    @staticmethod
    def tokenizer(id_or_dir, **kwargs):
        tokenizer = load_tokenizer(id_or_dir, **kwargs)
        if not type(tokenizer).__name__.startswith("Bert"):
            raise LongzooError(f"{id_or_dir}: tokenizer {type(tokenizer).__name__} is not a Chinese BERT vocabulary")
        return tokenizer

    @staticmethod
    def for_sequence_classification(id_or_dir, **kwargs):
        return load(id_or_dir, "sequence-classification", **kwargs)

    @staticmethod
    def for_token_classification(id_or_dir, **kwargs):
        return load(id_or_dir, "token-classification", **kwargs)

    @staticmethod
    def for_question_answering(id_or_dir, **kwargs):
        return load(id_or_dir, "question-answering", **kwargs)

    @staticmethod
    def for_multiple_choice(id_or_dir, **kwargs):
        return load(id_or_dir, "multiple-choice", **kwargs)
