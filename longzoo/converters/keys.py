"""Strict state-dict key accounting between a base checkpoint and its long model.

Every source key ends up in exactly one bucket (mapped, dropped with a reason), and
every target key is filled (from a source key, generated, or tied to another target
key).  Anything else is an error: a lenient ``load_state_dict(strict=False)`` is how
public converters ship models with silently random layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from longzoo.converters.adapters import Adapter, Target
from longzoo.errors import LongzooError
from longzoo.records import KeyCounts

POSITIONS = "embeddings.position_embeddings.weight"
_GLOBAL = re.compile(r"(.*\.attention\.self\.)(query|key|value)_global\.(weight|bias)$")


@dataclass
class KeyReport:
    """What happened to each key; stored in the manifest."""

    mapped: dict[str, str] = field(default_factory=dict)  # source -> target
    dropped: dict[str, str] = field(default_factory=dict)  # source -> reason
    generated: dict[str, str] = field(default_factory=dict)  # target -> how
    tied: dict[str, str] = field(default_factory=dict)  # target -> the target key it shares

    def summary(self) -> KeyCounts:
        return KeyCounts(mapped=len(self.mapped), generated=self.generated, tied=self.tied, dropped=self.dropped)


def is_mlm_checkpoint(adapter: Adapter, keys) -> bool:
    """True when the checkpoint carries a masked-LM head."""
    return any(k.startswith(adapter.head_prefix) for k in keys)


def target_name(adapter: Adapter, key: str, target: Target) -> str:
    """The output's key for source ``key``."""
    for src, dst in target.head_renames:
        if key.startswith(src):
            key = dst + key[len(src) :]
            break
    else:
        if key.startswith(adapter.backbone_prefix):
            key = key[len(adapter.backbone_prefix) :]
        key = target.backbone + key
    for pattern, repl in adapter.renames:
        key = re.sub(pattern, repl, key)
    return key


def map_keys(
    adapter: Adapter,
    source: dict,
    target_shapes: dict[str, tuple],
    tied: dict[str, str],
    target: Target,
) -> tuple[dict, KeyReport]:
    """Map ``source`` tensors onto the output's names and check the accounting.

    ``target_shapes`` holds every key of the target state dict, ``tied`` maps each
    target key that shares storage with another to that key.  Position embeddings and
    global projections are left to the caller, which generates them; they are returned
    as missing only if the caller forgets.
    """
    report = KeyReport()
    out: dict = {}
    for key, tensor in source.items():
        reason = adapter.drop_reason(key)
        if reason is not None:
            report.dropped[key] = reason
            continue
        name = target_name(adapter, key, target)
        if name in tied:
            report.dropped[key] = f"tied: {target.architecture} shares {name} with {tied[name]}"
            continue
        if name not in target_shapes:
            if name.startswith(f"{target.backbone}pooler."):
                report.dropped[key] = (
                    f"pooler: {target.architecture} has no pooler (a classifier made from it starts a new one)"
                )
                continue
            raise LongzooError(
                f"base weight {key!r} has no place in a {target.architecture} ({name!r}); "
                "the checkpoint is not a plain encoder of its declared type"
            )
        if name in out:
            raise LongzooError(f"base weights {report_source(report, name)!r} and {key!r} both map to {name!r}")
        if tuple(tensor.shape) != tuple(target_shapes[name]) and not name.endswith(POSITIONS):
            raise LongzooError(
                f"base weight {key!r} has shape {tuple(tensor.shape)}, "
                f"but the config implies {tuple(target_shapes[name])}"
            )
        out[name] = tensor
        report.mapped[key] = name
    return out, report


def report_source(report: KeyReport, target: str) -> str:
    return next(src for src, dst in report.mapped.items() if dst == target)


def global_projection_sources(target_keys) -> dict[str, str]:
    """``...query_global.weight`` -> ``...query.weight`` for every global projection."""
    return {k: m.group(1) + m.group(2) + "." + m.group(3) for k in target_keys if (m := _GLOBAL.match(k))}


def check_complete(state: dict, target_shapes: dict[str, tuple], tied: dict[str, str]) -> None:
    """Raise unless every untied target key is present with the right shape."""
    missing = [k for k in target_shapes if k not in tied and k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise LongzooError(f"the base checkpoint lacks weights for: {shown}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(target_shapes[key]):
            raise LongzooError(f"{key}: built with shape {tuple(tensor.shape)}, expected {tuple(target_shapes[key])}")
