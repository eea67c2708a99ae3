"""The typed records of ``longzoo.json``.

Each step (convert, pretrain, eval, finetune, card, push) owns one record; the model card
renders from them and nothing else.  Values are stored as what they are (numbers as
numbers, choices by their values); every piece of wording belongs to the card template.

Pydantic models, because a manifest is read back from a file anyone can edit: a wrong
type or a missing field is reported with its dotted path instead of surfacing as a
``KeyError`` deep in the card template.  Unknown fields are kept (``extra="allow"``), so
a note added by hand, or by a newer longzoo, survives a rewrite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

# Bounds that keep a hand edit from printing a 400-digit length on a card.
Count = Annotated[int, Field(ge=0, le=2**53)]  # tokens, documents, characters, steps
Length = Annotated[int, Field(gt=0, le=10**7)]  # positions, windows, sequence lengths


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _derived_fields_are_not_read(cls, data):
        """A derived field (``passed``) is written for readers of the file but always computed again."""
        if isinstance(data, dict) and cls.model_computed_fields:
            return {key: value for key, value in data.items() if key not in cls.model_computed_fields}
        return data


# ----------------------------------------------------------------------------- convert
class BaseRecord(Record):
    """The short model a conversion started from."""

    id: str  # a Hub id, or only the folder name of a local base
    source: Literal["hub", "local"]
    revision: str | None = None
    sha256: dict[str, str] | None = None  # file -> digest, for a base without a Hub revision
    model_type: str
    family: str
    architectures: list[str] | None = None
    max_positions: Length
    card: dict[str, Any] = Field(default_factory=dict)  # licence, languages, datasets of its model card


class PositionLayout(Record):
    """Where the base and the Longformer read position ``p`` (see ``converters/positions.py``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    pad_token_id: int | None
    base_offset: int
    base_length: Length
    new_offset: int


class KeyCounts(Record):
    """Strict key accounting, summarised: every source key mapped or dropped with a reason."""

    mapped: Count
    generated: dict[str, str] = Field(default_factory=dict)  # target key -> how it was made
    tied: dict[str, str] = Field(default_factory=dict)  # target key -> the key it shares
    dropped: dict[str, str] = Field(default_factory=dict)  # source key -> why


class FullLengthRun(Record):
    """One forward pass of the converted model at its full length."""

    tokens: Count
    requested: Length
    seconds: float
    finite: bool


class ParityReport(Record):
    """The converted model against its base on short inputs; ``passed`` is derived, never stored as given."""

    tolerance: float
    length: Length
    compared: Literal["logits", "last_hidden_state"]
    loading: dict[str, list[str]] = Field(default_factory=dict)  # stock loading's missing/unexpected keys
    tokenizer_ids_equal: bool
    tokenizer_class: str
    tokenizer_model_max_length: Length
    max_abs_diff: float
    max_abs_diff_global: float | None = None  # None: the base's own global projections were kept
    global_check: str | None = None
    positions: str | None = None  # how an interpolated table was checked
    attn_implementation: str | None = None  # what computed the converted model's attention
    full_length: FullLengthRun

    @computed_field
    @property
    def loads_cleanly(self) -> bool:
        return not any(self.loading.values())

    @computed_field
    @property
    def passed(self) -> bool:
        within = self.max_abs_diff <= self.tolerance and (
            self.max_abs_diff_global is None or self.max_abs_diff_global <= self.tolerance
        )
        run = self.full_length
        return self.loads_cleanly and self.tokenizer_ids_equal and within and run.finite and run.tokens == run.requested


class ConvertRecord(Record):
    base: BaseRecord
    architecture: str
    attention: Literal["longformer", "full"] = "longformer"  # manifests before the full form are Longformers
    max_positions: Length
    attention_window: Length | None = None  # None: full attention
    position_layout: PositionLayout
    options: dict[str, Any]  # the convert options as given
    keys: KeyCounts
    parity: ParityReport | None = None  # None: converted with --no-verify
    versions: dict[str, str] = Field(default_factory=dict)
    # a sentence-transformers base: the modules after the transformer, kept (e.g. Pooling, Normalize)
    sentence_modules: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _window_matches_the_form(self):
        if (self.attention == "longformer") != (self.attention_window is not None):
            raise ValueError(f"attention {self.attention!r} with attention_window {self.attention_window!r}")
        return self


# ----------------------------------------------------------------------------- evaluation
class MlmMetrics(Record):
    """Masked-LM quality on a corpus (``longzoo eval``); ``bpc`` is loss / ln 2 per predicted token."""

    loss: float
    bpc: float
    bits_per_char: float | None = None
    mlm_accuracy: float | None = None
    tokens: Count | None = None
    characters: Count | None = None
    predicted: Count | None = None
    documents: Count | None = None
    window: Length | None = None
    wwm: str | None = None


class Evaluation(MlmMetrics):
    """One ``longzoo eval`` of the model as it is now."""

    corpus: str | None = None
    hub_dataset: str | None = None


# ----------------------------------------------------------------------------- pretrain
class CorpusStats(Record):
    name: str
    hub_dataset: str | None = None
    language: str | None = None
    documents: Count
    tokens: Count
    characters: Count | None = None


class Hyperparameters(Record):
    """The optimisation settings a reader needs to reproduce a run, as numbers."""

    learning_rate: float
    schedule: str = "linear"
    warmup_steps: Count
    batch_size: Count
    grad_accum: Count
    world_size: Count
    tokens_per_step: Count
    weight_decay: float
    adam_epsilon: float
    max_grad_norm: float
    precision: Literal["fp32", "bf16", "fp16"]
    mlm_probability: float
    seed: int


class LossCurve(Record):
    train: list[tuple[int, float]] = Field(default_factory=list)  # (step, loss)
    eval: list[tuple[int, float]] = Field(default_factory=list)


class BeforeAfter(Record):
    """The held-out corpus scored before and after pretraining."""

    corpus: str | None = None
    before: MlmMetrics | None = None
    after: MlmMetrics | None = None


class PretrainRecord(Record):
    model: str | None = None  # the folder pretrained, by name
    architecture: str = "LongformerForMaskedLM"
    corpora: list[CorpusStats]
    eval_corpora: list[str] = Field(default_factory=list)
    steps: Count
    seq_len: Length
    wwm: Literal["jieba", "tokenizer", "none"]  # what a masked unit was
    global_attention: str = "none"
    options: dict[str, Any] = Field(default_factory=dict)  # the pretrain options as given
    world_size: Count = 1
    loss_curve: LossCurve = Field(default_factory=LossCurve)
    loss_plot: str | None = None
    eval: BeforeAfter | None = None
    frozen: list[str] = Field(default_factory=list)
    new_lm_head: bool = False
    hyperparameters: Hyperparameters | None = None
    resumed_from: int | None = None
    train_loss: float | None = None
    seconds: float | None = None

    @property
    def global_projections(self) -> Literal["trained", "copied"]:
        """Global q/k/v train with global attention on; otherwise they are re-copied from q/k/v at the end."""
        return "trained" if self.global_attention == "cls" else "copied"


# ----------------------------------------------------------------------------- finetune
class FileRecord(Record):
    name: str
    sha256: str
    documents: Count


class SystemResult(Record):
    """One system of the fine-tuning comparison, scored on the eval file."""

    accuracy: float
    macro_f1: float
    micro_f1: float
    documents: Count
    tokens: Count  # how many tokens of a document it reads
    train_loss: float | None = None
    train_seconds: float | None = None
    eval_documents_cut: int | None = None
    chunk_len: int | None = None
    chunk_overlap: int | None = None
    max_chunks: int | None = None


class FinetuneRecord(Record):
    task: str
    multi_label: bool
    labels: list[str]
    train: FileRecord
    eval: FileRecord
    max_len: Length
    baseline_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # the finetune options as given
    results: dict[str, SystemResult]  # "long", "truncate", "stride"
    architecture: str = "LongformerForSequenceClassification"

    @field_validator("results")
    @classmethod
    def _has_the_long_model(cls, results):
        if "long" not in results:
            raise ValueError('no "long" result: the fine-tuned model itself was not scored')
        return results


# ----------------------------------------------------------------------------- card, push
class CardSettings(Record):
    """The user's choices for the card, kept so that a later rendering keeps them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    language: list[str] = Field(default_factory=list)
    license: str | None = None
    model_name: str | None = None
    base_model: str | None = None
    repo_id: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)  # where each value came from

    @field_validator("language", mode="before")
    @classmethod
    def _one_code_is_a_list(cls, value):
        return [value] if isinstance(value, str) else value  # "zh" is one code, not two


class PushRecord(Record):
    repo_id: str
    revision: str | None = None
    commit: str | None = None
    pr_url: str | None = None


class HistoryEntry(Record):
    step: str
    at: str  # ISO 8601, UTC


# ----------------------------------------------------------------------------- the manifest
FORMAT = 2


class Manifest(Record):
    """All of ``longzoo.json``.  Evaluations describe the weights in the folder now: a step
    that changes the weights (pretrain, finetune) starts the list again."""

    format: int = FORMAT
    history: list[HistoryEntry] = Field(default_factory=list)
    convert: ConvertRecord | None = None
    pretrain: PretrainRecord | None = None
    finetune: FinetuneRecord | None = None
    evaluations: list[Evaluation] = Field(default_factory=list)
    card: CardSettings | None = None
    push: PushRecord | None = None

    @property
    def architecture(self) -> str | None:
        """The class of the weights in the folder now: the last step that wrote them decides."""
        for step in (self.finetune, self.pretrain, self.convert):
            if step is not None:
                return step.architecture
        return None

    @property
    def latest_metrics(self) -> Evaluation | None:
        """The model as it stands: the newest `longzoo eval`, else the score after pretraining."""
        if self.evaluations:
            return self.evaluations[-1]
        scored = self.pretrain.eval if self.pretrain else None
        if scored is None or scored.after is None:
            return None
        return Evaluation(corpus=scored.corpus, **scored.after.model_dump())
