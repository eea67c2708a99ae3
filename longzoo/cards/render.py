"""Rendering ``README.md`` from ``longzoo.json`` through ``huggingface_hub.ModelCard``.

The typed manifest (:mod:`longzoo.records`) is the only input: what `convert`, `pretrain`,
`eval` and `finetune` recorded, plus the ``card`` record holding the user's choices
(language, license, name, repo id), so that re-rendering after a later step keeps them.
The records go to the template as they are; all wording and number formatting is there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from longzoo.cards.metadata import NO_LICENSE, pipeline_tag, validate_metadata
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest, record_step
from longzoo.outputs import write_text_atomic
from longzoo.records import CardSettings, Manifest
from longzoo.text import chinese_vocabulary

TEMPLATE = Path(__file__).with_name("template.md")
CARD = "README.md"
_METRICS = (("bpc", "bits per token"), ("bits_per_char", "bits per character"), ("mlm_accuracy", "MLM accuracy"))
# (Hub metric type, name shown, key in the manifest)
_CLASSIFICATION_METRICS = (
    ("accuracy", "accuracy", "accuracy"),
    ("f1", "macro F1", "macro_f1"),
    ("f1", "micro F1", "micro_f1"),
)


class MissingLicenseError(LongzooError):
    """The card needs a licence and neither the user nor the base model's card gave one."""


@dataclass
class RenderedCard:
    path: Path
    settings: CardSettings
    metadata: dict
    problems: list[str]
    text: str


def render_card(
    folder: str | Path,
    *,
    language: list[str] | None = None,
    license: str | None = None,
    model_name: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    strict: bool = True,
    folder_name: str | None = None,
    write: bool = True,
) -> RenderedCard:
    """Write ``folder/README.md`` from the manifest and return what was written.

    Explicit arguments win over earlier choices in the manifest, which win over what
    the base model's card said.  With ``strict`` a metadata problem (no licence, bad
    language code, ...) raises :class:`LongzooError` and nothing is written; without it
    the card is written and the problems are returned, for `convert` to report.
    ``folder_name`` is the folder's final name when rendering in a staging folder;
    ``write=False`` renders and validates without touching the folder (for dry runs).
    """
    import jinja2
    from huggingface_hub import ModelCard

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.convert is None:
        raise LongzooError(f"{folder}: no longzoo.json with a conversion record; is this a longzoo model folder?")
    name = folder_name or folder.resolve().name
    settings = _settings(folder, name, manifest, language, license, model_name, base_model, repo_id)
    data = card_data(folder, manifest, settings)
    meta = data.to_dict()
    problems = validate_metadata(meta)
    if problems and strict:
        error = MissingLicenseError if problems[0] == NO_LICENSE else LongzooError
        raise error(f"card metadata: {problems[0]}")
    try:
        card = ModelCard.from_template(
            data, template_path=TEMPLATE, **template_context(folder, name, manifest, settings)
        )
    except (TypeError, ValueError, jinja2.UndefinedError) as exc:
        # a value edited by hand inside a free-form record (the options as given): name the file
        raise LongzooError(f"{folder / 'longzoo.json'}: a record is malformed ({exc})") from None
    text = str(card).rstrip("\n") + "\n"
    if write:
        write_text_atomic(folder / CARD, text)
        record_step(folder, "card", settings)
    return RenderedCard(folder / CARD, settings, meta, problems, text)


def check_records(folder: str | Path) -> None:
    """Fail now if the folder's ``longzoo.json`` cannot be read or its card rendered.

    Training steps call this before they start: a hand-edited manifest would otherwise
    fail only when the trained model is saved.
    """
    if read_manifest(folder).convert is not None:
        render_card(folder, strict=False, write=False)


def _settings(folder, name, manifest: Manifest, language, license, model_name, base_model, repo_id) -> CardSettings:
    previous = manifest.card.model_dump() if manifest.card else {}
    base = manifest.convert.base
    sources = dict(previous.get("sources") or {})
    if sources.get("model_name") == "output folder":
        previous.pop("model_name", None)  # a later step's folder names its own model

    def pick(key, given, *fallbacks):
        for origin, value in (("option", given), ("manifest", previous.get(key)), *fallbacks):
            if value:
                if origin != "manifest":
                    sources[key] = origin
                return value
        return None

    guessed = ["zh"] if _vocabulary_is_chinese(folder) else None
    languages = pick("language", language, ("base card", base.card.get("language")), ("vocabulary", guessed)) or []
    languages = [languages] if isinstance(languages, str) else list(languages)  # "zh" is one code, not two
    if sources.get("language") != "option":  # the model also speaks what it was pretrained on
        languages += [lang for lang in corpus_languages(manifest) if lang not in languages]
    return CardSettings(
        **(manifest.card.model_extra if manifest.card else {}),  # a note added by hand stays
        language=languages,
        license=pick("license", license, ("base card", base.card.get("license"))),
        model_name=pick("model_name", model_name, ("output folder", name)),
        base_model=pick("base_model", base_model, ("conversion", base.id if base.source == "hub" else None)),
        repo_id=pick("repo_id", repo_id),
        sources=sources,
    )


def corpus_languages(manifest: Manifest) -> list[str]:
    """Languages detected in the pretraining corpora (only Chinese is detected so far)."""
    corpora = manifest.pretrain.corpora if manifest.pretrain else []
    return sorted({c.language for c in corpora if c.language})


def _vocabulary_is_chinese(folder: Path) -> bool:
    """True for a Chinese BERT vocabulary, read from tokenizer.json (no tokenizer load)."""
    try:
        vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return chinese_vocabulary(vocab.keys() if isinstance(vocab, dict) else (entry[0] for entry in vocab))


def is_sentence_model(folder: Path, manifest: Manifest) -> bool:
    """A sentence-transformers model now: its modules were kept and are still in the folder
    (a fine-tuned classifier is not one)."""
    return bool(manifest.convert.sentence_modules) and not manifest.finetune and (folder / "modules.json").is_file()


def card_data(folder: Path, manifest: Manifest, settings: CardSettings):
    """The card's YAML header as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    sentence = is_sentence_model(folder, manifest)
    pipeline = "sentence-similarity" if sentence else pipeline_tag(manifest.architecture)
    form = "longformer" if manifest.convert.attention == "longformer" else "full-attention"
    tags = [form, "long-context", "longzoo", manifest.convert.base.model_type]
    if sentence:
        tags += ["sentence-transformers", "feature-extraction"]
    if "zh" in settings.language:
        tags.append("chinese")
    corpora = manifest.pretrain.corpora if manifest.pretrain else []
    datasets = [c.hub_dataset for c in corpora if c.hub_dataset]
    return ModelCardData(
        language=settings.language or None,
        license=settings.license,
        library_name="sentence-transformers" if sentence else "transformers",
        pipeline_tag=pipeline,
        tags=tags,
        base_model=settings.base_model,
        datasets=datasets or None,
        model_name=settings.model_name,
        eval_results=_eval_results(manifest, pipeline),
    )


def _eval_results(manifest: Manifest, pipeline: str | None) -> list | None:
    """The model-index: a fine-tuned model's scores on its eval file, else its latest MLM scores."""
    from huggingface_hub import EvalResult

    if manifest.finetune:
        long = manifest.finetune.results["long"]
        return [
            EvalResult(
                task_type=pipeline,
                dataset_type="text",
                dataset_name=manifest.finetune.eval.name,
                metric_type=metric_type,
                metric_name=name,
                metric_value=float(getattr(long, key)),
            )
            for metric_type, name, key in _CLASSIFICATION_METRICS
        ]
    latest = manifest.latest_metrics
    if latest is None:
        return None
    return [
        EvalResult(
            task_type=pipeline,
            dataset_type=latest.hub_dataset or "text",
            dataset_name=latest.corpus or "held-out text",
            metric_type=key,
            metric_name=label,
            metric_value=float(getattr(latest, key)),
        )
        for key, label in _METRICS
        if getattr(latest, key) is not None
    ] or None


def template_context(folder: Path, name: str, manifest: Manifest, settings: CardSettings) -> dict:
    """What the Jinja template reads: the records themselves, and three facts about the folder."""
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    mask = tokenizer_config.get("mask_token") or "[MASK]"
    if isinstance(mask, dict):  # older tokenizers store AddedToken dicts
        mask = mask.get("content", "[MASK]")
    pretrain = manifest.pretrain
    return {
        "manifest": manifest,
        "convert": manifest.convert,
        "base": manifest.convert.base,
        "parity": manifest.convert.parity,
        "pretrain": pretrain,
        "finetune": manifest.finetune,
        "evaluations": manifest.evaluations,
        "architecture": manifest.architecture,
        "settings": settings,
        "model_id": settings.repo_id or f"./{name}",
        "chinese": "zh" in settings.language,
        "sentence": is_sentence_model(folder, manifest),
        "mask_token": mask,
        "loss_plot": pretrain.loss_plot
        if pretrain and pretrain.loss_plot and (folder / pretrain.loss_plot).is_file()
        else None,
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
