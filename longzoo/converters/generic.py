"""The one converter: any supported short encoder -> stock transformers Longformer."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from longzoo.cards.render import render_card
from longzoo.converters.adapters import Adapter, get_adapter
from longzoo.converters.keys import (
    POSITIONS,
    KeyReport,
    check_complete,
    global_projection_sources,
    is_mlm_checkpoint,
    map_keys,
)
from longzoo.converters.positions import MODES, extend_positions
from longzoo.converters.source import (
    BaseSource,
    load_weights,
    read_base_card,
    resolve_base,
    sha256_files,
    weight_files,
)
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest, record_step
from longzoo.outputs import check_output, staged_output
from longzoo.progress import Steps

DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_WINDOW = 512

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

# Tokenizer config entries that describe where a tokenizer was loaded from, not what it is.
_TOKENIZER_LOAD_STATE = ("is_local", "local_files_only", "name_or_path", "_commit_hash")
_GENERIC_TOKENIZERS = (None, "PreTrainedTokenizerFast", "TokenizersBackend")


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked for; stored in the manifest as given."""

    max_pos: int
    attention_window: int
    position_init: str = "copy"
    dtype: str = "float32"
    revision: str | None = None
    allow_pickle: bool = False
    verify: bool = True

    def validate(self) -> None:
        if self.max_pos <= 0:
            raise LongzooError(f"--max-pos must be positive, got {self.max_pos}")
        w = self.attention_window
        if w <= 0 or w % 2:
            raise LongzooError(f"--attention-window must be a positive even number (it counts both sides), got {w}")
        if w > self.max_pos:
            raise LongzooError(f"--attention-window {w} is larger than --max-pos {self.max_pos}")
        if self.position_init not in MODES:
            raise LongzooError(f"--position-init must be one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise LongzooError(f"--dtype must be one of {', '.join(DTYPES)}")


@dataclass(frozen=True)
class PositionLayout:
    """Where position 0 lives in the base table and in the new one (see positions.py)."""

    pad_token_id: int
    base_offset: int
    base_length: int
    new_offset: int


@dataclass
class ConversionResult:
    """What :func:`convert` produced."""

    out: Path
    architecture: str
    report: KeyReport
    parity: dict | None
    manifest: dict
    card_problems: list[str]


def default_output(base: str, max_pos: int) -> Path:
    """``./<base name>-longformer-<max_pos>`` for a Hub id or folder."""
    name = Path(base.rstrip("/")).name or "model"
    return Path.cwd() / f"{name}-longformer-{max_pos}"


def convert(
    base: str,
    max_pos: int | None = None,
    out: str | Path | None = None,
    *,
    attention_window: int | None = None,
    force: bool = False,
    revision: str | None = None,
    position_init: str = "copy",
    dtype: str = "float32",
    allow_pickle: bool = False,
    verify: bool = True,
    steps: Steps | None = None,
) -> ConversionResult:
    """Convert ``base`` (folder or Hub id) into a Longformer with ``max_pos`` positions.

    The output folder holds ``config.json``, ``model.safetensors``, the tokenizer with
    ``model_max_length = max_pos``, ``longzoo.json`` and a model card (``README.md``).  It is built in a temporary
    folder and renamed into place only after the parity check passed, so a failed
    conversion leaves nothing behind.  Raises :class:`LongzooError` for user errors.

    A base that is already long in a foreign layout (Longformer_ZH's BERT layout, the
    reference notebook's ``RobertaLong``: an ``attention_window`` in the config and
    ``*_global`` weights) is rewritten as a stock checkpoint without re-extending; its
    length and window are the defaults of ``max_pos`` and ``attention_window``.
    """
    steps = steps or Steps()
    # Checks that need no download come first.
    early_pos = max_pos if max_pos is not None else 1 << 30
    early_window = attention_window if attention_window is not None else min(2, early_pos)
    ConvertOptions(early_pos, early_window, position_init, dtype).validate()
    if out is not None or max_pos:
        out = (Path(out) if out is not None else default_output(base, max_pos)).expanduser().absolute()
        check_output(out, force)  # fail before a long download

    with steps.step(f"Resolving base {base}"):
        source = resolve_base(base, revision=revision, allow_pickle=allow_pickle)
    base_config = _read_config(source.path)
    adapter = get_adapter(base_config.get("model_type"))
    tokenizer = _load_tokenizer(source.path)
    layout = _position_layout(base_config, tokenizer, adapter)
    legacy_window = _legacy_window(base_config)
    if max_pos is None:
        if legacy_window is None:
            raise LongzooError("--max-pos is required (only an already-long base has a length to keep)")
        max_pos = layout.base_length
    if out is None:
        out = default_output(base, max_pos).absolute()
        check_output(out, force)
    window = attention_window if attention_window is not None else legacy_window or min(DEFAULT_WINDOW, max_pos)
    options = ConvertOptions(max_pos, window, position_init, dtype, revision, allow_pickle, verify)
    options.validate()
    if max_pos < layout.base_length or (max_pos == layout.base_length and legacy_window is None):
        raise LongzooError(f"--max-pos {max_pos} must be larger than the base model's {layout.base_length} positions")
    _check_compatible(base_config, adapter)

    with steps.step("Reading base weights"):
        files = weight_files(source.path, allow_pickle)
        state = load_weights(files)
        hashes = None if source.revision else sha256_files(files)
    mlm = is_mlm_checkpoint(adapter, state)

    with steps.step("Converting weights"):
        model, report = _build_model(state, base_config, tokenizer, adapter, layout, options, mlm)
    del state

    with staged_output(out, force=force) as staging:
        with steps.step("Saving model and tokenizer"):
            model.save_pretrained(staging)
            _save_tokenizer(tokenizer, staging, max_pos, adapter)
        del model
        parity = None
        if verify:
            from longzoo.converters.parity import verify_conversion

            copied_globals = any("_global." in key for key in report.generated)
            parity = verify_conversion(source.path, staging, mlm, layout, options, steps, check_global=copied_globals)
            if not parity["passed"]:
                raise LongzooError(_parity_failure(parity))
        record = _manifest_record(source, hashes, adapter, base_config, layout, options, mlm, report, parity)
        record_step(staging, "convert", record)
        # The card is part of the output; a missing licence is reported, not fatal here.
        card = render_card(staging, strict=False, folder_name=out.name)
        manifest = read_manifest(staging)
    return ConversionResult(out, record["architecture"], report, parity, manifest, card.problems)


def _legacy_window(config: dict) -> int | None:
    """The window of a long model in a foreign layout (its config carries one), else None."""
    window = config.get("attention_window")
    if window is None:
        return None
    windows = set(window) if isinstance(window, list) else {window}
    if len(windows) != 1 or not all(isinstance(w, int) for w in windows):
        raise LongzooError(f"attention_window {window!r}: longzoo converts one window for all layers")
    return windows.pop()


def _read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LongzooError(f"{folder / 'config.json'}: unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise LongzooError(f"{folder / 'config.json'}: not a model config")
    return config


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for bad files
        raise LongzooError(f"{folder}: cannot load the base tokenizer ({exc})") from None


def _position_layout(config: dict, tokenizer, adapter: Adapter) -> PositionLayout:
    # The tokenizer decides which id pads; configs have been wrong about it (hfl once).
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.get("pad_token_id")
    if pad is None:
        raise LongzooError("the base tokenizer has no pad token, so Longformer positions are undefined")
    # RoBERTa-style bases index their own table from *their config's* pad id + 1.
    base_pad = config.get("pad_token_id")
    base_offset = (pad if base_pad is None else base_pad) + 1 if adapter.positions_after_pad else 0
    if not isinstance(config.get("max_position_embeddings"), int):
        raise LongzooError("the base config has no max_position_embeddings")
    base_length = config["max_position_embeddings"] - base_offset
    return PositionLayout(pad, base_offset, base_length, new_offset=pad + 1)


def _check_compatible(config: dict, adapter: Adapter) -> None:
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise LongzooError(
            f"position_embedding_type {kind!r} is not supported; only absolute positions extend by copying"
        )
    act = config.get("hidden_act", "gelu")
    if adapter.head_activation_from_config and act != "gelu":
        raise LongzooError(
            f"the base MLM head uses {act!r}, but Longformer's LM head always applies gelu, "
            "so the converted model could not reproduce the base"
        )


def _longformer_config(base_config: dict, tokenizer, layout: PositionLayout, options: ConvertOptions, mlm: bool):
    from transformers import LongformerConfig

    carried = {k: base_config[k] for k in _CARRIED if k in base_config}
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return LongformerConfig(
        **carried,
        attention_window=options.attention_window,
        max_position_embeddings=options.max_pos + layout.new_offset,
        pad_token_id=layout.pad_token_id,
        bos_token_id=bos,
        eos_token_id=eos,
        sep_token_id=tokenizer.sep_token_id,
        architectures=["LongformerForMaskedLM" if mlm else "LongformerModel"],
    )


def _build_model(state, base_config, tokenizer, adapter, layout, options, mlm):
    import torch
    from transformers import LongformerForMaskedLM, LongformerModel

    config = _longformer_config(base_config, tokenizer, layout, options, mlm)
    cls = LongformerForMaskedLM if mlm else LongformerModel
    # Build on the meta device: no memory, no random init; every tensor is assigned below.
    with torch.device("meta"):
        model = cls(config)
    target_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = _tied_keys(model)
    backbone = "longformer." if mlm else ""
    new_state, report = map_keys(adapter, state, target_shapes, tied, backbone)

    positions = backbone + POSITIONS
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
    missing, unexpected = model.load_state_dict(new_state, strict=False, assign=True)
    if set(missing) != set(tied) or unexpected:
        raise RuntimeError(f"internal key accounting error: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    report.tied = dict(tied)
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"internal error: tensors left unset: {leftovers}")
    model.config.dtype = options.dtype
    return model.eval(), report


def _tied_keys(model) -> dict[str, str]:
    """Target keys that share a parameter with an earlier key (e.g. the LM decoder)."""
    model.tie_weights()
    first: dict[int, str] = {}
    tied = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied[name] = first[id(param)]
        else:
            first[id(param)] = name
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


def _manifest_record(source: BaseSource, hashes, adapter, base_config, layout, options, mlm, report, parity) -> dict:
    return {
        "base": {
            "id": source.hub_id or source.name,
            "source": "hub" if source.hub_id else "local",
            "revision": source.revision,
            "sha256": hashes,
            "model_type": adapter.model_type,
            "family": adapter.family,
            "architectures": base_config.get("architectures"),
            "max_positions": layout.base_length,
            "card": read_base_card(source.path),
        },
        "architecture": "LongformerForMaskedLM" if mlm else "LongformerModel",
        "max_positions": options.max_pos,
        "attention_window": options.attention_window,
        "position_layout": asdict(layout),
        "options": asdict(options),
        "keys": report.summary(),
        "parity": parity,
        "versions": _versions(),
    }


def _parity_failure(parity: dict) -> str:
    if not parity.get("tokenizer_ids_equal", True):
        return "parity check failed: the converted tokenizer gives different ids than the base; nothing was written"
    global_diff = parity["max_abs_diff_global"]
    return (
        f"parity check failed: max |Δ| = {parity['max_abs_diff']:.3g} (global: "
        f"{'not checked' if global_diff is None else format(global_diff, '.3g')}) > {parity['tolerance']:g}; "
        "nothing was written"
    )
