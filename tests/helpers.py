"""Test helpers: tiny base models of every supported family, with real tokenizers.

Each case is a short encoder small enough to convert in about a second (hidden 32,
two layers), saved the way the Hub serves it (safetensors + tokenizer files).  Weights
are drawn with a large standard deviation so that any misplaced tensor, and above all a
position table shifted by one row, changes the outputs far beyond the parity tolerance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from longzoo.converters.sample_text import TEXTS

SPECIALS_ROBERTA = ["<s>", "<pad>", "</s>", "<unk>"]
BASE_POSITIONS = 64  # usable positions of every tiny base
MAX_POS = 256  # what the tests convert to
WINDOW = 64  # parity then runs at 33 tokens


@dataclass(frozen=True)
class Case:
    """One tiny base model to build: family, head and tokenizer kind."""

    id: str
    model_type: str
    model_class: str  # transformers class that saves the base
    tokenizer: str  # "zh-char", "bpe" or "unigram"
    layers: int = 2

    @property
    def mlm(self) -> bool:
        return not self.model_class.endswith("Model")


CASES = [
    Case("bert-zh-mlm", "bert", "BertForMaskedLM", "zh-char"),
    Case("bert-zh-pretraining", "bert", "BertForPreTraining", "zh-char"),
    Case("bert-encoder", "bert", "BertModel", "zh-char"),
    Case("roberta-mlm", "roberta", "RobertaForMaskedLM", "bpe"),
    Case("distilroberta-mlm", "roberta", "RobertaForMaskedLM", "bpe", layers=3),
    Case("roberta-encoder", "roberta", "RobertaModel", "bpe"),
    Case("xlm-roberta-mlm", "xlm-roberta", "XLMRobertaForMaskedLM", "unigram"),
    Case("camembert-mlm", "camembert", "CamembertForMaskedLM", "unigram"),
]
CASE_IDS = [c.id for c in CASES]


def chinese_bert_tokenizer():
    """A character-level Chinese BERT vocabulary (as bert-base-chinese / hfl use)."""
    from transformers import BertTokenizer

    chars = sorted({ch for ch in "".join(TEXTS) if "\u4e00" <= ch <= "\u9fff"})
    ascii_pieces = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    punct = list(".,!?;:'\"()-，。！？；：、")
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ascii_pieces + ["##" + c for c in ascii_pieces] + punct
    )
    return BertTokenizer(vocab={tok: i for i, tok in enumerate(dict.fromkeys(vocab))})


def bpe_tokenizer():
    """A byte-level BPE trained on the fly, wrapped as RoBERTa's tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(TEXTS), vocab_size=400, min_frequency=1, special_tokens=[*SPECIALS_ROBERTA, "<mask>"])
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return RobertaTokenizer(vocab=model["vocab"], merges=merges)


def unigram_tokenizer(cls_name: str):
    """A sentencepiece-style unigram vocabulary, as XLM-R and CamemBERT use."""
    import transformers
    from tokenizers import SentencePieceUnigramTokenizer

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(list(TEXTS), vocab_size=300, special_tokens=SPECIALS_ROBERTA, unk_token="<unk>")
    pieces = [tuple(p) for p in json.loads(unigram.to_str())["model"]["vocab"]]
    return getattr(transformers, cls_name)(vocab=pieces + [("<mask>", 0.0)])


def make_tokenizer(case: Case):
    if case.tokenizer == "zh-char":
        return chinese_bert_tokenizer()
    if case.tokenizer == "bpe":
        return bpe_tokenizer()
    return unigram_tokenizer({"xlm-roberta": "XLMRobertaTokenizer", "camembert": "CamembertTokenizer"}[case.model_type])


def make_model(case: Case, tokenizer):
    import transformers

    config_class = transformers.AutoConfig.for_model(case.model_type).__class__
    roberta_like = case.model_type != "bert"
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=case.layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=BASE_POSITIONS + (tokenizer.pad_token_id + 1 if roberta_like else 0),
        type_vocab_size=1 if roberta_like else 2,
        pad_token_id=tokenizer.pad_token_id,
        layer_norm_eps=1e-5 if roberta_like else 1e-12,
    )
    torch.manual_seed(len(case.id))
    model = getattr(transformers, case.model_class)(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                continue
            param.normal_(0.0, 0.25)
    model.tie_weights()
    return model.eval()


def save_base(case: Case, folder: Path) -> Path:
    tokenizer = make_tokenizer(case)
    tokenizer.model_max_length = BASE_POSITIONS
    model = make_model(case, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def case_by_id(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def register_tiny_recipe(name: str, base: Path, corpus: str, attention: str = "longformer", **plan):
    """A zoo recipe for a tiny base (MAX_POS positions, WINDOW window or full attention), registered until unregistered."""
    from longzoo.zoo import PretrainRecipe, Recipe, register

    settings = {
        "max_steps": 1,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-4,
        "warmup_steps": 0,
        **plan,
    }
    return register(
        Recipe(
            name=name,
            base=str(base),
            family="bert",
            max_positions=MAX_POS,
            attention_window=WINDOW if attention == "longformer" else None,
            attention=attention,
            languages=("zh",),
            license="apache-2.0",
            pretrain=PretrainRecipe(corpus, settings, precision="fp32"),
        )
    )


def tiny_pretrain_arguments(**settings):
    """``PretrainArguments`` for a few steps of a tiny model: batch 2, no warmup, 64 tokens, fp32.

    fp32 unless a precision is given: most tests check exact arithmetic; bf16 has its own.
    """
    from longzoo.training.arguments import PretrainArguments

    base = dict(per_device_train_batch_size=2, gradient_accumulation_steps=1, warmup_steps=0, seq_len=64)
    if not {"precision", "bf16", "fp16"} & settings.keys():
        base["precision"] = "fp32"
    return PretrainArguments(**{**base, **settings})
