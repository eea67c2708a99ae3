"""Keeping a sentence-transformers base a sentence-transformers model.

A sentence-transformers folder is a transformers model plus ``modules.json``, which lists
the modules applied after it (pooling, dense layers, normalisation), each with its own
subfolder, and ``sentence_bert_config.json`` with the ``max_seq_length`` it truncates to.
The converted folder gets the same modules with ``max_seq_length`` raised to the new
length, so ``SentenceTransformer(out)`` embeds short texts as the base did (the encoder's
outputs are equal, the modules are the same) and long texts up to the new length.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from longzoo.errors import LongzooError

MODULES = "modules.json"
SENTENCE_CONFIG = "sentence_bert_config.json"
# copied as they are: what the model is, prompts and the similarity function
AS_IS = ("config_sentence_transformers.json",)
_PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# folders longzoo's own outputs use (pretraining's checkpoints and prepared corpora)
_RESERVED = ("checkpoints", "cache")


def sentence_modules(folder: Path) -> list[dict] | None:
    """The modules of a sentence-transformers folder (None when it is not one), checked."""
    path = folder / MODULES
    if not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LongzooError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(modules, list) or not all(
        isinstance(m, dict) and isinstance(m.get("path"), str) for m in modules
    ):
        raise LongzooError(f"{path}: expected a list of modules, each with a 'path'")
    first = modules[0] if modules else {}
    if not str(first.get("type", "")).endswith("models.Transformer") or first["path"] != "":
        raise LongzooError(
            f'{path}: the first module must be the transformer itself (path ""); '
            "convert the folder that holds its config.json instead"
        )
    for module in modules[1:]:
        _module_folder(folder, module["path"], path)
    return modules


def _module_folder(folder: Path, relative: str, where: Path) -> Path:
    """A module's folder, which must lie inside the base folder and hold no pickled weights."""
    parts = PurePosixPath(relative).parts
    if not relative or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise LongzooError(f"{where}: module path {relative!r} must be a folder inside the model")
    if parts[0] in _RESERVED or parts[0].startswith("."):
        raise LongzooError(f"{where}: module path {relative!r} is a name longzoo's outputs use; rename the module")
    module = folder.joinpath(*parts)
    pickled = [p.name for p in module.rglob("*") if p.suffix.lower() in _PICKLED] if module.is_dir() else []
    if pickled:
        raise LongzooError(f"{module}: pickled weights ({pickled[0]}); longzoo copies only safetensors modules")
    return module


def copy_sentence_modules(base: Path, out: Path, modules: list[dict], max_seq_length: int) -> None:
    """Write ``base``'s modules into ``out`` with ``max_seq_length`` raised to the new length."""
    shutil.copy2(base / MODULES, out / MODULES)
    for name in AS_IS:
        if (base / name).is_file():
            shutil.copy2(base / name, out / name)
    settings = {}
    if (base / SENTENCE_CONFIG).is_file():
        try:
            settings = json.loads((base / SENTENCE_CONFIG).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise LongzooError(f"{base / SENTENCE_CONFIG}: not valid JSON ({exc})") from None
    settings["max_seq_length"] = max_seq_length
    (out / SENTENCE_CONFIG).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    for module in modules[1:]:
        source = _module_folder(base, module["path"], base / MODULES)
        if source.is_dir():  # a module without settings (Normalize) may have no folder
            shutil.copytree(source, out.joinpath(*PurePosixPath(module["path"]).parts))
