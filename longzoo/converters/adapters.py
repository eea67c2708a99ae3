"""Per-architecture facts, as data.

Everything that differs between the encoder families longzoo converts lives in one
frozen :class:`Adapter` per ``model_type``; the generic converter in
:mod:`longzoo.converters.convert` reads nothing else.  Adding a family means adding a
row here (and a fixture in the tests), not a new converter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from longzoo.errors import LongzooError

# Old TF-converted BERT checkpoints name LayerNorm parameters gamma/beta.
_LEGACY_LAYERNORM = ((r"\.gamma$", ".weight"), (r"\.beta$", ".bias"))

# Buffers some checkpoints carry; Longformer recomputes both from the input.
_BUFFERS = (
    (r"(^|\.)embeddings\.position_ids$", "buffer: Longformer derives position ids from the input ids"),
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
    """

    model_type: str
    family: str
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


def _roberta_like(model_type: str, family: str, tokenizer_class: str) -> Adapter:
    return Adapter(
        model_type=model_type,
        family=family,
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
        dropped=_BUFFERS + ((r"^cls\.seq_relationship\.", "next-sentence head: Longformer has no NSP task"),),
    ),
    "roberta": _roberta_like("roberta", "RoBERTa", "RobertaTokenizer"),  # DistilRoBERTa too
    "xlm-roberta": _roberta_like("xlm-roberta", "XLM-RoBERTa", "XLMRobertaTokenizer"),
    "camembert": _roberta_like("camembert", "CamemBERT", "CamembertTokenizer"),
}


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
