"""Rendering ``README.md`` from ``longzoo.json`` through ``huggingface_hub.ModelCard``.

The manifest is the only input: what `convert` (and later `pretrain` / `eval`) recorded,
plus the ``card`` section holding the user's choices (language, license, name, repo
id), so that re-rendering after a later step keeps them.

Sections this module reads, beyond ``convert`` (written by the pretraining steps)::

    pretrain: {corpora: [{name, hub_dataset?, language?, documents, tokens}], architecture?, steps, seq_len,
               hyperparameters: {...}, wwm, new_lm_head, loss_plot?,
               eval?: {corpus, before: METRICS, after: METRICS}}
    eval:     {corpus, hub_dataset?, **METRICS}        # the latest `longzoo eval`
    METRICS = {loss, bpc, bits_per_char, mlm_accuracy, tokens}
    finetune: {task, multi_label, labels, train: FILE, eval: FILE, architecture,
               results: {long|truncate|stride: {accuracy, macro_f1, micro_f1, tokens, ...}}}
    FILE = {name, sha256, documents}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from longzoo.cards.metadata import NO_LICENSE, PIPELINE_TAGS, validate_metadata
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest, record_step
from longzoo.outputs import write_text_atomic
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


@dataclass(frozen=True)
class CardSettings:
    """The user's choices for the card; stored as the manifest's ``card`` section."""

    language: list[str] = field(default_factory=list)
    license: str | None = None
    model_name: str | None = None
    base_model: str | None = None
    repo_id: str | None = None
    sources: dict = field(default_factory=dict)  # where each value came from


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
    if "convert" not in manifest:
        raise LongzooError(f"{folder}: no longzoo.json with a conversion record; is this a longzoo model folder?")
    name = folder_name or folder.resolve().name
    try:
        settings = _settings(folder, name, manifest, language, license, model_name, base_model, repo_id)
        data = card_data(manifest, settings)
        meta = data.to_dict()
        problems = validate_metadata(meta)
        if problems and strict:
            error = MissingLicenseError if problems[0] == NO_LICENSE else LongzooError
            raise error(f"card metadata: {problems[0]}")
        context = template_context(folder, name, manifest, settings)
        card = ModelCard.from_template(data, template_path=TEMPLATE, **context)
    except (KeyError, TypeError, AttributeError, ValueError, jinja2.UndefinedError) as exc:
        # a manifest edited by hand, or cut short: say which record, not where the template tripped
        raise LongzooError(f"{folder / 'longzoo.json'}: a record is missing or malformed ({exc!r})") from None
    text = str(card).rstrip("\n") + "\n"
    if write:
        write_text_atomic(folder / CARD, text)
        record_step(folder, "card", asdict(settings))
    return RenderedCard(folder / CARD, settings, meta, problems, text)


def check_records(folder: str | Path) -> None:
    """Fail now if the folder's ``longzoo.json`` cannot be read or its card rendered.

    Training steps call this before they start: a hand-edited manifest would otherwise
    fail only when the trained model is saved.
    """
    if "convert" in read_manifest(folder):
        render_card(folder, strict=False, write=False)


def _settings(folder, name, manifest, language, license, model_name, base_model, repo_id) -> CardSettings:
    previous = dict(manifest.get("card") or {})
    base = manifest["convert"]["base"]
    base_card = base.get("card") or {}
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
    languages = pick("language", language, ("base card", base_card.get("language")), ("vocabulary", guessed)) or []
    languages = [languages] if isinstance(languages, str) else list(languages)  # "zh" is one code, not two
    if sources.get("language") != "option":  # the model also speaks what it was pretrained on
        languages += [lang for lang in corpus_languages(manifest) if lang not in languages]
    return CardSettings(
        language=languages,
        license=pick("license", license, ("base card", base_card.get("license"))),
        model_name=pick("model_name", model_name, ("output folder", name)),
        base_model=pick("base_model", base_model, ("conversion", base["id"] if base["source"] == "hub" else None)),
        repo_id=pick("repo_id", repo_id),
        sources=sources,
    )


def corpus_languages(manifest: dict) -> list[str]:
    """Languages detected in the pretraining corpora (only Chinese is detected so far)."""
    corpora = (manifest.get("pretrain") or {}).get("corpora") or []
    return sorted({c["language"] for c in corpora if c.get("language")})


def current_architecture(manifest: dict) -> str:
    """The class of the weights in the folder now: the last step that wrote them decides."""
    for step in ("finetune", "pretrain"):
        if manifest.get(step):
            # pretraining always writes a masked-LM model (records before 2026-11-25 lack the field)
            return manifest[step].get("architecture", "LongformerForMaskedLM")
    return manifest["convert"]["architecture"]


def _vocabulary_is_chinese(folder: Path) -> bool:
    """True for a Chinese BERT vocabulary, read from tokenizer.json (no tokenizer load)."""
    try:
        vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return chinese_vocabulary(vocab.keys() if isinstance(vocab, dict) else (entry[0] for entry in vocab))


def card_data(manifest: dict, settings: CardSettings):
    """The card's YAML header as ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import EvalResult, ModelCardData

    convert = manifest["convert"]
    finetune = manifest.get("finetune")
    pipeline = PIPELINE_TAGS.get(current_architecture(manifest))
    tags = ["longformer", "long-context", "longzoo", convert["base"]["model_type"]]
    if "zh" in settings.language:
        tags.append("chinese")
    pretrain = manifest.get("pretrain") or {}
    datasets = [c["hub_dataset"] for c in pretrain.get("corpora", []) if c.get("hub_dataset")]
    eval_results = None
    latest = _latest_eval(manifest)
    if finetune:
        long = finetune["results"]["long"]
        eval_results = [
            EvalResult(
                task_type=pipeline,
                dataset_type="text",
                dataset_name=finetune["eval"]["name"],
                metric_type=metric_type,
                metric_name=name,
                metric_value=float(long[key]),
            )
            for metric_type, name, key in _CLASSIFICATION_METRICS
        ]
    elif latest:
        eval_results = [
            EvalResult(
                task_type=pipeline,
                dataset_type=latest.get("hub_dataset") or "text",
                dataset_name=latest.get("corpus") or "held-out text",
                metric_type=key,
                metric_name=label,
                metric_value=float(latest[key]),
            )
            for key, label in _METRICS
            if isinstance(latest.get(key), (int, float))
        ] or None
    return ModelCardData(
        language=settings.language or None,
        license=settings.license,
        library_name="transformers",
        pipeline_tag=pipeline,
        tags=tags,
        base_model=settings.base_model,
        datasets=datasets or None,
        model_name=settings.model_name,
        eval_results=eval_results,
    )


def _latest_eval(manifest: dict) -> dict | None:
    """The metrics of the model as it stands: a later `longzoo eval`, else after pretraining."""
    if manifest.get("eval"):
        return manifest["eval"]
    evaluation = (manifest.get("pretrain") or {}).get("eval") or {}
    return {"corpus": evaluation.get("corpus"), **evaluation["after"]} if evaluation.get("after") else None


def template_context(folder: Path, name: str, manifest: dict, settings: CardSettings) -> dict:
    """Everything the Jinja template needs, derived from the manifest alone."""
    convert = manifest["convert"]
    finetune = manifest.get("finetune")
    mlm = current_architecture(manifest) == "LongformerForMaskedLM"
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    mask = tokenizer_config.get("mask_token") or "[MASK]"
    if isinstance(mask, dict):  # older tokenizers store AddedToken dicts
        mask = mask.get("content", "[MASK]")
    chinese = "zh" in settings.language
    pretrain = manifest.get("pretrain")
    results = []
    if pretrain and pretrain.get("eval"):
        evaluation = pretrain["eval"]
        results += [
            {"model": "converted, before pretraining", "corpus": evaluation.get("corpus"), **evaluation["before"]},
            {"model": "after pretraining", "corpus": evaluation.get("corpus"), **evaluation["after"]},
        ]
    if manifest.get("eval"):
        results.append({"model": "this model (latest `longzoo eval`)", **manifest["eval"]})
    parity = convert.get("parity")
    return {
        "model_name": settings.model_name,
        "model_id": settings.repo_id or f"./{name}",
        "mlm": mlm,
        "auto_class": "AutoModelForSequenceClassification"
        if finetune
        else "AutoModelForMaskedLM"
        if mlm
        else "AutoModel",
        "chinese": chinese,
        "example": _example(chinese, mask if mlm else None),
        "finetune": finetune,
        "systems": _systems(finetune),
        "base": convert["base"],
        "base_link": settings.base_model,
        "base_name": base_display(convert["base"]),
        "convert": convert,
        "parity": parity,
        "pretrain": pretrain,
        "loss_plot": pretrain.get("loss_plot")
        if pretrain and (folder / str(pretrain.get("loss_plot"))).is_file()
        else None,
        "results": results,
        "versions": convert.get("versions", {}),
        "dropped": convert["keys"]["dropped"],
    }


_SYSTEMS = {
    "long": "this model (long, global attention on the first token)",
    "truncate": "short base model, truncated",
    "stride": "short base model, chunks pooled by a small transformer",
}


def _systems(finetune: dict | None) -> list[dict]:
    """Rows of the fine-tuning comparison, this model first."""
    if not finetune:
        return []
    results = finetune["results"]
    return [{"name": _SYSTEMS[key], **results[key]} for key in _SYSTEMS if key in results]


def _example(chinese: bool, mask: str | None) -> str:
    word = mask if mask else ("慢" if chinese else "slowly")
    return f"清晨的小城{word}慢醒来。" if chinese else f"The river town woke {word} that spring. "


def base_display(base: dict) -> str:
    """How the card names the base: its Hub id, or only the folder name of a local base
    (a full local path means nothing to readers and exposes the converter's file system)."""
    return base["id"] if base["source"] == "hub" else f"{Path(base['id']).name} (local folder)"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
