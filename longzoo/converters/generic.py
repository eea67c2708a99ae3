"""The one converter: any supported short encoder -> a stock transformers long model.

Two forms (``--attention``): transformers' Longformer (a sliding window plus global
tokens), or the base's own architecture with a longer position table and full attention
(the route BGE-M3 took from XLM-R), which runs on transformers' SDPA and flash paths.
Both go through the same key accounting, parity proof, manifest and card.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from longzoo.cards.render import render_card
from longzoo.choices import AttentionForm, DType, PositionInit
from longzoo.converters.adapters import Adapter, Target, get_adapter, target_for, usable_positions
from longzoo.converters.keys import (
    POSITIONS,
    KeyReport,
    check_complete,
    global_projection_sources,
    is_mlm_checkpoint,
    map_keys,
)
from longzoo.converters.positions import extend_positions
from longzoo.converters.sentence import copy_sentence_modules, sentence_modules
from longzoo.converters.source import (
    BaseSource,
    check_endpoint_variable,
    load_weights,
    one_line,
    read_base_card,
    resolve_base,
    sha256_files,
    weight_files,
)
from longzoo.converters.tokenizers import load_checked_tokenizer
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest, record_step
from longzoo.numbers import require_int
from longzoo.outputs import check_output, staged_output
from longzoo.progress import Steps
from longzoo.records import BaseRecord, ConvertRecord, Manifest, ParityReport, PositionLayout
from longzoo.weights import first_non_finite

DEFAULT_WINDOW = 512
# Beyond 2**20 positions the table alone outgrows most machines and no run would finish.
MAX_POSITIONS = 1 << 20
# transformers' Longformer fails on every input with a window of 2 (one token per side).
MIN_WINDOW = 4
# Base config sizes that must be positive whole numbers (missing ones take Longformer's defaults).
_SIZES = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "type_vocab_size",
    "max_position_embeddings",
)

# Copied verbatim from the base config when present; Longformer's defaults otherwise.
_CARRIED = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "tie_word_embeddings",
)

# Base config entries that describe the file or the long layout of a foreign base, not the full-attention model.
_CONFIG_STATE = (
    "attention_window",
    "architectures",
    "transformers_version",
    "_name_or_path",
    "auto_map",
    "gradient_checkpointing",
)

# Tokenizer config entries that describe where a tokenizer was loaded from, not what it is.
_TOKENIZER_LOAD_STATE = ("is_local", "local_files_only", "name_or_path", "_commit_hash")
_GENERIC_TOKENIZERS = (None, "PreTrainedTokenizerFast", "TokenizersBackend")


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked for; stored in the manifest as given."""

    max_pos: int
    attention_window: int | None  # None: full attention
    position_init: str = "copy"
    dtype: str = "float32"
    revision: str | None = None
    allow_pickle: bool = False
    verify: bool = True
    attention: str = AttentionForm.longformer.value

    def validate(self) -> None:
        check_numbers(self.max_pos, self.attention_window)
        _check_choices(self.position_init, self.dtype, self.revision, self.attention, self.attention_window)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_numbers(max_pos, window) -> None:
    """Refuse a ``--max-pos`` or ``--attention-window`` no model can have; None skips one."""
    require_int("max_pos", max_pos, optional=True)
    require_int("attention_window", window, optional=True)
    if max_pos is not None:
        if max_pos <= 0:
            raise LongzooError(f"--max-pos must be positive, got {max_pos}")
        if max_pos > MAX_POSITIONS:
            raise LongzooError(f"--max-pos {max_pos:,} is more than longzoo's limit of {MAX_POSITIONS:,} positions")
    if window is None:
        return
    if window <= 0 or window % 2:
        raise LongzooError(f"--attention-window must be a positive even number (it counts both sides), got {window}")
    if window < MIN_WINDOW:
        raise LongzooError(
            f"--attention-window must be at least {MIN_WINDOW}: "
            f"transformers' Longformer cannot run a window of {window}"
        )
    if max_pos is not None and window > max_pos:
        raise LongzooError(f"--attention-window {window} is larger than --max-pos {max_pos}")


def _check_choices(position_init, dtype, revision, attention, window) -> None:
    PositionInit.require("--position-init", position_init)
    DType.require("--dtype", dtype)
    AttentionForm.require("--attention", attention)
    if attention == AttentionForm.full and window is not None:
        raise LongzooError("--attention-window is for --attention longformer; full attention has no window")
    if revision is not None and not isinstance(revision, str):
        raise LongzooError(f"--revision must be a branch, tag or commit name, got {revision!r}")


@dataclass
class ConversionResult:
    """What :func:`convert` produced."""

    out: Path
    architecture: str
    report: KeyReport
    parity: ParityReport | None
    manifest: Manifest
    card_problems: list[str]


def default_output(base: str, max_pos: int, attention: str = AttentionForm.longformer.value) -> Path:
    """``./<base name>-longformer-<max_pos>`` (or ``-full-``) for a Hub id or folder."""
    name = Path(base.rstrip("/")).name or "model"
    return Path.cwd() / f"{name}-{attention}-{max_pos}"


def convert(
    base: str,
    max_pos: int | None = None,
    out: str | Path | None = None,
    *,
    attention: str = AttentionForm.longformer.value,
    attention_window: int | None = None,
    force: bool = False,
    revision: str | None = None,
    position_init: str = "copy",
    dtype: str = "float32",
    allow_pickle: bool = False,
    verify: bool = True,
    steps: Steps | None = None,
) -> ConversionResult:
    """Convert ``base`` (folder or Hub id) into a long model with ``max_pos`` positions.

    ``attention="longformer"`` writes a Longformer, ``"full"`` the base's own architecture
    with an extended position table (no window).  The output folder holds ``config.json``,
    ``model.safetensors``, the tokenizer with ``model_max_length = max_pos``, ``longzoo.json``
    and a model card (``README.md``).  It is built in a temporary
    folder and renamed into place only after the parity check passed, so a failed
    conversion leaves nothing behind.  Raises :class:`LongzooError` for user errors.

    A base that is already long in a foreign layout (Longformer_ZH's BERT layout, the
    reference notebook's ``RobertaLong``: an ``attention_window`` in the config and
    ``*_global`` weights) is rewritten as a stock checkpoint without re-extending; its
    length and window are the defaults of ``max_pos`` and ``attention_window``.
    """
    steps = steps or Steps()
    # Checks that need no download come first.
    check_endpoint_variable()
    check_numbers(max_pos, attention_window)
    _check_choices(position_init, dtype, revision, attention, attention_window)
    # --out must never be, or hold, the base it is built from (--force would delete it).
    inputs = [base] if Path(base).expanduser().is_dir() else []
    if out is not None or max_pos:
        out = (Path(out) if out is not None else default_output(base, max_pos, attention)).expanduser().absolute()
        check_output(out, force, inputs)  # fail before a long download

    with steps.step(f"Resolving base {base}"):
        source = resolve_base(base, revision=revision, allow_pickle=allow_pickle)
    base_config, adapter, tokenizer, layout = _inspect_base(source.path, attention)
    modules = sentence_modules(source.path)  # a sentence-transformers base keeps its modules
    max_pos, window = _sizes(base_config, source.path, layout, max_pos, attention_window, attention)
    if out is None:
        out = default_output(base, max_pos, attention).absolute()
        check_output(out, force, [source.path])
    options = ConvertOptions(max_pos, window, position_init, dtype, revision, allow_pickle, verify, attention)
    options.validate()
    _check_table_fits(options, layout, base_config)

    model, report, target, hashes = _converted_model(source, base_config, tokenizer, adapter, layout, options, steps)
    with staged_output(out, force=force, inputs=[source.path]) as staging:
        _save(model, tokenizer, adapter, source.path, modules, staging, steps)
        del model
        parity = _verify(source, staging, target, layout, options, report, steps) if verify else None
        record = _manifest_record(source, hashes, adapter, base_config, layout, options, target, report, parity)
        if modules:
            kept = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules[1:]]
            record = record.model_copy(update={"sentence_modules": kept})
        record_step(staging, "convert", record)
        # The card is part of the output; a missing licence is reported, not fatal here.
        card = render_card(staging, strict=False, folder_name=out.name)
        manifest = read_manifest(staging)
    return ConversionResult(out, record.architecture, report, parity, manifest, card.problems)


def _save(model, tokenizer, adapter: Adapter, base: Path, modules: list, staging: Path, steps: Steps) -> None:
    """Weights, tokenizer (with the new length) and a sentence-transformers base's modules."""
    positions = usable_positions(model.config)
    with steps.step("Saving model and tokenizer"):
        model.save_pretrained(staging)
        _save_tokenizer(tokenizer, staging, positions, adapter)
        if modules:
            copy_sentence_modules(base, staging, modules, positions)


def _converted_model(source: BaseSource, base_config, tokenizer, adapter, layout, options, steps: Steps):
    """The long model built from the base weights, its key report, its :class:`Target`, the weights' digests."""
    with steps.step("Reading base weights"):
        files = weight_files(source.path, options.allow_pickle, root=source.root)
        state = load_weights(files)
        _check_position_rows(state, layout, source.path / "config.json")
        hashes = None if source.revision else sha256_files(files)
    target = target_for(adapter, options.attention, is_mlm_checkpoint(adapter, state))
    with steps.step("Converting weights"):
        model, report = _build_model(state, base_config, tokenizer, adapter, layout, options, target)
    return model, report, target, hashes


def _sizes(config: dict, folder: Path, layout: PositionLayout, max_pos, window, attention) -> tuple[int, int | None]:
    """``--max-pos`` and ``--attention-window`` as given, or the defaults the base implies."""
    legacy_window = _legacy_window(config, folder / "config.json")
    if max_pos is None:
        if legacy_window is None:
            raise LongzooError("--max-pos is required (only an already-long base has a length to keep)")
        max_pos = layout.base_length
    if max_pos < layout.base_length or (max_pos == layout.base_length and legacy_window is None):
        raise LongzooError(f"--max-pos {max_pos} must be larger than the base model's {layout.base_length} positions")
    if attention == AttentionForm.full:
        if legacy_window is not None:  # dropping the window would change what the trained model computes
            raise LongzooError(
                f"{folder}: a long model trained with a sliding window ({legacy_window}) and global projections; "
                "it converts to --attention longformer only"
            )
        return max_pos, None
    if window is None:  # the default is even, as every window must be, also for an odd --max-pos
        window = legacy_window or min(DEFAULT_WINDOW, max_pos - max_pos % 2)
    return max_pos, window


def _verify(source, staging: Path, target: Target, layout, options, report, steps) -> dict:
    """The parity proof of the staged output; a failure is an error and nothing is published."""
    from longzoo.converters.parity import verify_conversion

    copied_globals = any("_global." in key for key in report.generated)
    parity = verify_conversion(source.path, staging, target, layout, options, steps, check_global=copied_globals)
    if not parity.passed:
        raise LongzooError(_parity_failure(parity))
    return parity


def _inspect_base(folder: Path, attention: str) -> tuple[dict, Adapter, object, PositionLayout]:
    """Read and check everything of the base but its weights (cheap, so it comes first)."""
    path = folder / "config.json"
    config = _read_config(path)
    try:
        adapter = get_adapter(config["model_type"])
    except LongzooError as exc:
        raise LongzooError(f"{path}: {exc}") from None
    _check_config(config, path)
    _check_compatible(config, adapter, path, attention)
    tokenizer = load_checked_tokenizer(folder, _carried(config, "vocab_size"))
    return config, adapter, tokenizer, _position_layout(config, tokenizer, adapter, path, attention)


def _legacy_window(config: dict, path: Path) -> int | None:
    """The window of a long model in a foreign layout (its config carries one), else None."""
    window = config.get("attention_window")
    if window is None:
        return None
    windows = window if isinstance(window, list) else [window]
    if not windows or not all(_is_int(w) and w > 0 for w in windows):
        raise LongzooError(f"{path}: attention_window {window!r} is not a positive whole number (or a list of them)")
    if len(set(windows)) != 1:
        raise LongzooError(f"{path}: attention_window {window!r}: longzoo converts one window for all layers")
    return windows[0]


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LongzooError(f"{path}: unreadable ({one_line(exc)})") from None
    if not isinstance(config, dict):
        raise LongzooError(f"{path}: not a model config (a JSON object)")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise LongzooError(f'{path}: model_type {model_type!r} is not a type name; set the base\'s, e.g. "bert"')
    return config


@functools.cache
def _longformer_defaults():
    from transformers import LongformerConfig

    return LongformerConfig()


def _carried(config: dict, key: str):
    """A value as the converted model gets it: the base config's, else Longformer's default."""
    return config[key] if key in config else getattr(_longformer_defaults(), key)


# Real-valued fields and the ranges a working model has them in.
_FLOATS = (
    ("layer_norm_eps", 1e-30, 1.0),
    ("initializer_range", 0.0, 10.0),
    ("hidden_dropout_prob", 0.0, 1.0),
    ("attention_probs_dropout_prob", 0.0, 1.0),
)


def _check_config(config: dict, path: Path) -> None:
    """Sizes must be positive whole numbers that fit together; other fields go to transformers."""

    def bad(problem: str) -> LongzooError:
        return LongzooError(f"{path}: {problem}; correct config.json to match the checkpoint")

    if "max_position_embeddings" not in config:
        raise bad("no max_position_embeddings")
    for key in _SIZES:
        value = _carried(config, key)
        if not _is_int(value) or value <= 0:
            raise bad(f"{key} {value!r} is not a positive whole number")
    hidden, heads = _carried(config, "hidden_size"), _carried(config, "num_attention_heads")
    if hidden % heads:
        raise bad(f"num_attention_heads {heads} does not divide hidden_size {hidden}")
    pad, vocab = config.get("pad_token_id"), _carried(config, "vocab_size")
    if pad is not None and not (_is_int(pad) and 0 <= pad < vocab):
        raise bad(f"pad_token_id {pad!r} is not an id in the vocabulary (0 to {vocab - 1})")
    # JSON admits NaN: a NaN epsilon or dropout would make every output NaN, weights finite or not.
    for key, low, high in _FLOATS:
        value = config.get(key)
        if value is not None and not (isinstance(value, (int, float)) and low <= value <= high and value == value):
            raise bad(f"{key} {value!r} is not a number from {low:g} to {high:g}")
    # The base's own config class checks the type of every other field it knows.
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path.parent)
    except (StrictDataclassError, ValueError, TypeError, KeyError) as exc:
        raise bad(one_line(exc)) from None


def _position_layout(config: dict, tokenizer, adapter: Adapter, path: Path, attention: str) -> PositionLayout:
    # The tokenizer decides which id pads; configs have been wrong about it (hfl once).
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.get("pad_token_id")
    if pad is None:
        raise LongzooError("the base tokenizer has no pad token, so Longformer positions are undefined")
    # RoBERTa-style bases index their own table from *their config's* pad id + 1.
    base_pad = config.get("pad_token_id")
    base_offset = (pad if base_pad is None else base_pad) + 1 if adapter.positions_after_pad else 0
    rows = config["max_position_embeddings"]
    base_length = rows - base_offset
    if base_length < 1:
        raise LongzooError(
            f"{path}: max_position_embeddings {rows} leaves no positions after the {base_offset} rows "
            "before them (pad_token_id + 1); correct config.json"
        )
    if base_length > MAX_POSITIONS:
        raise LongzooError(
            f"{path}: max_position_embeddings {rows:,} is more than longzoo's limit of {MAX_POSITIONS:,}; "
            "correct config.json"
        )
    # Longformer numbers tokens from pad + 1 whatever the family; full attention keeps the base's numbering.
    new_offset = base_offset if attention == AttentionForm.full else pad + 1
    return PositionLayout(pad_token_id=pad, base_offset=base_offset, base_length=base_length, new_offset=new_offset)


def _check_position_rows(state: dict, layout: PositionLayout, path: Path) -> None:
    """The config's max_position_embeddings must describe the table the weights hold."""
    rows = layout.base_offset + layout.base_length
    for key, tensor in state.items():
        if key.endswith(POSITIONS) and tensor.dim() == 2 and tensor.shape[0] != rows:
            raise LongzooError(
                f"{path}: max_position_embeddings {rows} does not match the position table in the weights "
                f"({key} has {tensor.shape[0]} rows); correct config.json"
            )


def _check_compatible(config: dict, adapter: Adapter, path: Path, attention: str) -> None:
    from transformers.activations import ACT2FN

    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise LongzooError(
            f"{path}: position_embedding_type {kind!r} is not supported; only absolute positions extend by copying"
        )
    act = config.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in ACT2FN:
        raise LongzooError(f"{path}: hidden_act {act!r} is not an activation transformers knows; correct config.json")
    if adapter.head_activation_from_config and act != "gelu" and attention == AttentionForm.longformer:
        raise LongzooError(
            f"{path}: the base MLM head uses {act!r}, but Longformer's LM head always applies gelu, "
            "so the converted model could not reproduce the base; --attention full keeps the base's head"
        )


def _physical_memory() -> int | None:
    """This machine's memory in bytes, where the platform tells."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # sysconf is POSIX-only
        return None


def _check_table_fits(options: ConvertOptions, layout: PositionLayout, config: dict) -> None:
    """Refuse a position table larger than the machine before any weights are read."""
    rows, hidden = options.max_pos + layout.new_offset, _carried(config, "hidden_size")
    need, have = rows * hidden * 4, _physical_memory()  # built in float32 whatever --dtype is
    if have and need > have:
        raise LongzooError(
            f"--max-pos {options.max_pos:,} needs a {need / 2**30:.1f} GiB position table ({rows:,} rows of "
            f"{hidden} floats), more than this machine's {have / 2**30:.1f} GiB of memory"
        )


def _check_finite_output(state: dict, dtype: str) -> None:
    """Never write NaN or inf, --no-verify or not; the base was finite, so the cast overflowed."""
    key = first_non_finite(state.items())
    if key is not None:
        hint = "; convert with --dtype bfloat16 or float32" if dtype != "float32" else ""
        raise LongzooError(f"converted weight {key} overflows {dtype} (NaN or infinite after the cast){hint}")


def _target_config(base_config: dict, tokenizer, layout: PositionLayout, options: ConvertOptions, target: Target):
    """The output's config: Longformer's with the base's sizes, or the base's own with more positions."""
    from transformers import AutoConfig, LongformerConfig

    rows = options.max_pos + layout.new_offset
    if not target.windowed:
        carried = {k: v for k, v in base_config.items() if k not in _CONFIG_STATE}
        carried.update(max_position_embeddings=rows, architectures=[target.architecture])
        return AutoConfig.for_model(**carried)
    carried = {k: base_config[k] for k in _CARRIED if k in base_config}
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return LongformerConfig(
        **carried,
        attention_window=options.attention_window,
        max_position_embeddings=rows,
        pad_token_id=layout.pad_token_id,
        bos_token_id=bos,
        eos_token_id=eos,
        sep_token_id=tokenizer.sep_token_id,
        architectures=[target.architecture],
    )


def _build_model(state, base_config, tokenizer, adapter, layout, options, target: Target):
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    config = _target_config(base_config, tokenizer, layout, options, target)
    auto = AutoModelForMaskedLM if target.architecture.endswith("ForMaskedLM") else AutoModel
    # Build on the meta device: no memory, no random init; every tensor is assigned below.
    with torch.device("meta"):
        model = auto.from_config(config)
    if type(model).__name__ != target.architecture:
        raise RuntimeError(f"internal error: built {type(model).__name__}, expected {target.architecture}")
    target_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = _tied_keys(model)
    new_state, report = map_keys(adapter, state, target_shapes, tied, target)

    positions = target.backbone + POSITIONS
    if positions not in new_state:
        raise LongzooError("the base checkpoint has no position embeddings")
    new_state[positions] = extend_positions(
        new_state[positions],
        layout.base_offset,
        layout.base_length,
        layout.new_offset,
        options.max_pos,
        options.position_init,
    )
    report.generated[positions] = (
        f"{options.position_init} of base rows {layout.base_offset}..{layout.base_offset + layout.base_length - 1} "
        f"from row {layout.new_offset}"
    )
    for global_key, local_key in global_projection_sources(target_shapes).items():
        # A long base in a foreign layout brings trained global projections: keep those.
        if local_key in new_state and global_key not in new_state:
            # A copy, not the same tensor: global and local projections train apart.
            new_state[global_key] = new_state[local_key].clone()
            report.generated[global_key] = f"copy of {local_key}"
    check_complete(new_state, target_shapes, tied)

    torch_dtype = getattr(torch, options.dtype)
    new_state = {k: v.to(torch_dtype) for k, v in new_state.items()}
    _check_finite_output(new_state, options.dtype)
    missing, unexpected = model.load_state_dict(new_state, strict=False, assign=True)
    if set(missing) != set(tied) or unexpected:
        raise RuntimeError(f"internal key accounting error: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    report.tied = dict(tied)
    _fill_index_buffers(model)
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"internal error: tensors left unset: {leftovers}")
    model.config.dtype = options.dtype
    return model.eval(), report


def _fill_index_buffers(model) -> None:
    """BERT-family embeddings keep unsaved ``position_ids``/``token_type_ids`` buffers; on the
    meta device they are empty, and transformers computes them only in its own init."""
    import torch

    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta or name not in ("position_ids", "token_type_ids"):
                continue
            value = torch.arange(buffer.shape[-1]) if name == "position_ids" else torch.zeros(buffer.shape[-1])
            persistent = name not in module._non_persistent_buffers_set
            module.register_buffer(name, value.to(buffer.dtype).expand(buffer.shape), persistent=persistent)


def _tied_keys(model) -> dict[str, str]:
    """Target keys that share a parameter with another key (e.g. the LM decoder), each mapped to
    the key that holds it: the source of transformers' own tie (the word embeddings, not the
    decoder), whatever order the class registers them in (XLM-R's head comes first)."""
    model.tie_weights()
    tie_targets = set(getattr(model, "all_tied_weights_keys", None) or {})
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    tied = {}
    for names in groups.values():
        holder = next((name for name in names if name not in tie_targets), names[0])
        tied.update({name: holder for name in names if name != holder})
    return tied


def _save_tokenizer(tokenizer, folder: Path, max_pos: int, adapter: Adapter) -> None:
    tokenizer.model_max_length = max_pos
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in _TOKENIZER_LOAD_STATE:
        config.pop(key, None)
    # Without a specific class AutoTokenizer would follow model_type=longformer and build
    # a RoBERTa BPE tokenizer, which cannot read a BERT vocabulary.
    if config.get("tokenizer_class") in _GENERIC_TOKENIZERS:
        config["tokenizer_class"] = adapter.tokenizer_class
    config["model_max_length"] = max_pos
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _versions() -> dict:
    from importlib.metadata import version

    packages = ("longzoo", "torch", "transformers", "tokenizers", "safetensors", "huggingface_hub")
    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing distribution is simply not recorded
            continue
    found["python"] = platform.python_version()
    return found


def _manifest_record(source: BaseSource, hashes, adapter, base_config, layout, options, target, report, parity):
    return ConvertRecord(
        base=BaseRecord(
            id=source.hub_id or source.path.name,  # a local base by its folder name only
            source="hub" if source.hub_id else "local",
            revision=source.revision,
            sha256=hashes,
            model_type=adapter.model_type,
            family=adapter.family,
            architectures=base_config.get("architectures"),
            max_positions=layout.base_length,
            card=read_base_card(source.path),
        ),
        architecture=target.architecture,
        attention=target.attention,
        max_positions=options.max_pos,
        attention_window=options.attention_window,
        position_layout=layout,
        options=asdict(options),
        keys=report.summary(),
        parity=parity,
        versions=_versions(),
    )


def _parity_failure(parity: ParityReport) -> str:
    if not parity.tokenizer_ids_equal:
        return "parity check failed: the converted tokenizer gives different ids than the base; nothing was written"
    global_diff = parity.max_abs_diff_global
    return (
        f"parity check failed: max |Δ| = {parity.max_abs_diff:.3g} (global: "
        f"{'not checked' if global_diff is None else format(global_diff, '.3g')}) > {parity.tolerance:g}; "
        "nothing was written"
    )
