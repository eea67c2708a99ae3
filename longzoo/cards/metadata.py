"""Model-card metadata: built from the manifest, validated before any upload.

The Hub rejects bad metadata only after a (possibly long) upload, so every field
longzoo writes is checked here first, offline.
"""

from __future__ import annotations

import re

import yaml

NO_LICENSE = "no license: pass --license ID (the base model's card names none)"

# Licence identifiers the Hub accepts in `license:` (its documented list).
HUB_LICENSES = frozenset(
    """
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear
    c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0
    cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0
    cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl
    ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
    lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0
    odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2 llama3.3
    llama4 gemma unknown other
    """.split()
)
# The Hub task of each head longzoo writes, by the end of the class name (any family).
_PIPELINES = (
    ("ForMaskedLM", "fill-mask"),
    ("ForSequenceClassification", "text-classification"),
    ("Model", "feature-extraction"),
)
PIPELINE_TAGS = frozenset(tag for _, tag in _PIPELINES) | {"sentence-similarity"}
LIBRARIES = ("transformers", "sentence-transformers")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")


def pipeline_tag(architecture: str | None) -> str | None:
    """``fill-mask`` for ``LongformerForMaskedLM`` or ``BertForMaskedLM``, and so on; None for a class longzoo never writes."""
    for suffix, tag in _PIPELINES:
        if architecture and architecture.endswith(suffix):
            return tag
    return None


def validate_metadata(meta: dict) -> list[str]:
    """Problems with ``meta`` (the card's YAML header as a dict); empty when valid."""
    problems = []
    license_id = meta.get("license")
    if not license_id:
        problems.append(NO_LICENSE)
    elif license_id not in HUB_LICENSES:
        problems.append(f"license {license_id!r} is not a Hub licence identifier (use e.g. apache-2.0, mit, other)")
    for code in meta.get("language") or []:
        if code == "multilingual":  # the Hub's tag for many-language models
            continue
        if not isinstance(code, str) or not _LANGUAGE.match(code):
            problems.append(f"language {code!r} is not an ISO 639 code such as zh or en")
    if meta.get("pipeline_tag") not in PIPELINE_TAGS:
        problems.append(f"pipeline_tag {meta.get('pipeline_tag')!r} is not one longzoo models support")
    if meta.get("library_name") not in LIBRARIES:
        problems.append(f"library_name must be one of {', '.join(LIBRARIES)} (the model needs nothing else)")
    base = meta.get("base_model")
    if base is not None and not (isinstance(base, str) and _HUB_ID.match(base)):
        problems.append(f"base_model {base!r} is not a Hub model id")
    for entry in meta.get("model-index") or []:
        for result in entry.get("results", []):
            for metric in result.get("metrics", []):
                if not isinstance(metric.get("value"), (int, float)):
                    problems.append(f"model-index metric {metric.get('type')!r} has no numeric value")
    try:
        if yaml.safe_load(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)) != meta:
            problems.append("metadata does not survive a YAML round trip")
    except yaml.YAMLError as exc:
        problems.append(f"metadata is not valid YAML: {exc}")
    return problems
