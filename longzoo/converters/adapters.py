"""Per-architecture facts, as data.

Everything that differs between the encoder families longzoo converts lives in one
frozen :class:`Adapter` per ``model_type``, and everything that differs between the two
long forms (transformers' Longformer, or the base's own architecture with full attention)
in one :class:`Target` built from it; the generic converter in
:mod:`longzoo.converters.generic` reads nothing else.  Adding a family means adding a
row here (and a fixture in the tests), not a new converter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from longzoo.choices import AttentionForm
from longzoo.errors import LongzooError

# Old TF-converted BERT checkpoints name LayerNorm parameters gamma/beta.
_LEGACY_LAYERNORM = ((r"\.gamma$", ".weight"), (r"\.beta$", ".bias"))

# Buffers some checkpoints carry; both long forms recompute them from the input.
_BUFFERS = (
    (r"(^|\.)embeddings\.position_ids$", "buffer: position ids are derived from the input ids"),
    (r"(^|\.)embeddings\.token_type_ids$", "buffer: token type ids default to zeros at run time"),
)


@dataclass(frozen=True)
class Adapter:
    """How one source architecture maps onto transformers' Longformer.

    Attributes:
        model_type: the ``model_type`` of the base ``config.json``.
        family: human-readable family name used in manifests and cards.
        backbone_prefix: prefix of encoder keys in task checkpoints (``bert.``); bare
            checkpoints (``BertModel``) have no prefix and are accepted too.
        head_prefix: prefix that marks masked-LM head keys; their presence decides
            between ``LongformerForMaskedLM`` and ``LongformerModel``.
        head_renames: ``(source prefix, target prefix)`` pairs for the MLM head.
        renames: regex substitutions applied to every key after the prefix rules.
        dropped: ``(regex, reason)`` for source keys that have no target; each one that
            matches is reported in the manifest.
        positions_after_pad: True when the base numbers real tokens from
            ``pad_token_id + 1`` (RoBERTa and its descendants), False when position 0
            is row 0 of the table (BERT).
        head_activation_from_config: BERT's head applies ``config.hidden_act``;
            Longformer's head hard-codes gelu, so a non-gelu BERT head cannot match.
        tokenizer_class: class written to ``tokenizer_config.json`` when the base does
            not name one (``AutoTokenizer`` would otherwise pick Longformer's BPE).
        class_prefix: transformers' name of the family's classes (``Bert`` of ``BertModel``).
    """

    model_type: str
    family: str
    class_prefix: str
    backbone_prefix: str
    head_prefix: str
    head_renames: tuple[tuple[str, str], ...]
    positions_after_pad: bool
    head_activation_from_config: bool
    tokenizer_class: str
    renames: tuple[tuple[str, str], ...] = _LEGACY_LAYERNORM
    dropped: tuple[tuple[str, str], ...] = field(default=_BUFFERS)

    def drop_reason(self, key: str) -> str | None:
        """Why ``key`` has no place in a Longformer, or None when it should map."""
        for pattern, reason in self.dropped:
            if re.search(pattern, key):
                return reason
        return None


_ROBERTA_HEAD = (("lm_head.", "lm_head."),)


def _roberta_like(model_type: str, family: str, class_prefix: str, tokenizer_class: str) -> Adapter:
    return Adapter(
        model_type=model_type,
        family=family,
        class_prefix=class_prefix,
        backbone_prefix="roberta.",
        head_prefix="lm_head.",
        head_renames=_ROBERTA_HEAD,
        positions_after_pad=True,
        head_activation_from_config=False,
        tokenizer_class=tokenizer_class,
    )


ADAPTERS: dict[str, Adapter] = {
    "bert": Adapter(
        model_type="bert",
        family="BERT",  # bert-base-chinese, hfl chinese-roberta-wwm-ext, roberta_zh
        class_prefix="Bert",
        backbone_prefix="bert.",
        head_prefix="cls.predictions.",
        head_renames=(
            ("cls.predictions.transform.dense.", "lm_head.dense."),
            ("cls.predictions.transform.LayerNorm.", "lm_head.layer_norm."),
            ("cls.predictions.decoder.", "lm_head.decoder."),
            ("cls.predictions.bias", "lm_head.bias"),
        ),
        positions_after_pad=False,
        head_activation_from_config=True,
        tokenizer_class="BertTokenizer",
        dropped=_BUFFERS + ((r"^cls\.seq_relationship\.", "next-sentence head: the long model has no NSP task"),),
    ),
    "roberta": _roberta_like("roberta", "RoBERTa", "Roberta", "RobertaTokenizer"),  # DistilRoBERTa too
    "xlm-roberta": _roberta_like("xlm-roberta", "XLM-RoBERTa", "XLMRoberta", "XLMRobertaTokenizer"),
    "camembert": _roberta_like("camembert", "CamemBERT", "Camembert", "CamembertTokenizer"),
}


# What computes a full-attention model's attention: transformers' fused kernels (flash on CPU and GPU).
FULL_ATTENTION_IMPLEMENTATION = "sdpa"


@dataclass(frozen=True)
class Target:
    """The long model one base becomes, in one of the two forms (see :class:`AttentionForm`).

    Attributes:
        attention: ``longformer`` or ``full``.
        architecture: the transformers class written to ``config.json``.
        backbone: prefix of encoder keys in the output (``longformer.``, ``bert.``, or none).
        head_renames: ``(source prefix, target prefix)`` pairs for the MLM head.
    """

    attention: str
    architecture: str
    backbone: str
    head_renames: tuple[tuple[str, str], ...]

    @property
    def windowed(self) -> bool:
        return self.attention == AttentionForm.longformer


def target_for(adapter: Adapter, attention: str, mlm: bool) -> Target:
    """What ``adapter``'s base becomes in the ``attention`` form, with or without an MLM head."""
    if attention == AttentionForm.longformer:
        return Target(
            attention=AttentionForm.longformer.value,
            architecture="LongformerForMaskedLM" if mlm else "LongformerModel",
            backbone="longformer." if mlm else "",
            head_renames=adapter.head_renames,
        )
    return Target(
        attention=AttentionForm.full.value,
        architecture=f"{adapter.class_prefix}ForMaskedLM" if mlm else f"{adapter.class_prefix}Model",
        backbone=adapter.backbone_prefix if mlm else "",
        head_renames=((adapter.head_prefix, adapter.head_prefix),),  # the base's own head, as it is
    )


def get_adapter(model_type: str | None) -> Adapter:
    """The adapter for ``model_type``, or a :class:`LongzooError` naming the supported ones."""
    try:
        return ADAPTERS[model_type]  # type: ignore[index]
    except KeyError:
        supported = ", ".join(sorted(ADAPTERS))
        raise LongzooError(f"unsupported architecture {model_type!r}; longzoo converts: {supported}") from None


def usable_positions(config) -> int:
    """Tokens one input can hold (specials included), for a Longformer or a short base alike.

    Longformer and RoBERTa-style bases number real tokens from ``pad_token_id + 1`` (see
    ``positions.py``), so their first ``pad + 1`` rows are never a token's position.
    """
    adapter = ADAPTERS.get(config.model_type)
    after_pad = config.model_type == "longformer" or (adapter is not None and adapter.positions_after_pad)
    return config.max_position_embeddings - (config.pad_token_id + 1 if after_pad else 0)
