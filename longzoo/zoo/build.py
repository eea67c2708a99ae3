"""``longzoo zoo build``: convert -> pretrain (with eval) -> card (-> push) from a recipe.

Each stage writes its own folder under ``OUT`` and is skipped when its manifest says it
finished, so a build that stopped (crash, kill, Ctrl-C) continues where it stopped:
pretraining itself resumes from its newest complete checkpoint.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest
from longzoo.progress import Steps
from longzoo.zoo.registry import Recipe, get_recipe


@dataclass
class BuildResult:
    recipe: Recipe
    converted: Path
    pretrained: Path
    skipped: list[str]
    eval_before: dict | None
    eval_after: dict | None
    repo_url: str | None = None


def recipe_base(recipe: Recipe) -> str:
    """Where the base comes from: a package that ships it (offline), else the Hub id."""
    if recipe.offline_base:
        try:
            module = importlib.import_module(recipe.offline_base)
        except ImportError:
            return recipe.base
        return str(module.get_model_path())
    return recipe.base


def _finished(folder: Path, step: str) -> bool:
    return (folder / "model.safetensors").is_file() and getattr(read_manifest(folder), step) is not None


def build(
    name: str,
    *,
    out: str | Path | None = None,
    corpora: list[str] | None = None,
    eval_corpora: list[str] | None = None,
    max_steps: int | None = None,
    seq_len: int | None = None,
    push_to: str | None = None,
    steps: Steps | None = None,
) -> BuildResult:
    """Build the zoo entry ``name`` end to end; see the module docstring."""
    from longzoo.cards.render import render_card

    recipe = get_recipe(name)
    args = _pretrain_arguments(recipe, max_steps, seq_len)  # checked before hours of work
    if push_to is not None:
        from longzoo.hub import check_repo_id

        check_repo_id(push_to, "--push")
    steps = steps or Steps()
    out = Path(out or name).expanduser().absolute()
    converted, pretrained = out / "converted", out / "pretrained"
    hub_base = None if Path(recipe.base).expanduser().exists() else recipe.base
    card = dict(license=recipe.license, language=list(recipe.languages), base_model=hub_base, strict=False)

    skipped = []
    if _finished(converted, "convert"):
        _check_same_recipe(converted, recipe)
        skipped.append("convert")
    else:
        _convert(recipe, converted, steps)
        render_card(converted, model_name=f"{recipe.name} (converted, not pretrained)", **card)
    if _finished(pretrained, "pretrain"):
        skipped.append("pretrain")
    else:
        _pretrain(converted, pretrained, corpora or [recipe.pretrain.corpus], eval_corpora, args, steps)
    rendered = render_card(pretrained, model_name=recipe.name, **card)
    if rendered.problems:
        raise LongzooError(f"card metadata: {rendered.problems[0]}")
    scored = read_manifest(pretrained).pretrain.eval
    before, after = (scored.before, scored.after) if scored else (None, None)
    result = BuildResult(
        recipe, converted, pretrained, skipped, before and before.model_dump(), after and after.model_dump()
    )
    if push_to:
        from longzoo.hub import push

        result.repo_url = push(pretrained, push_to, steps=steps).repo_url
    return result


def _convert(recipe: Recipe, converted: Path, steps: Steps) -> None:
    from longzoo.converters import convert

    base = recipe_base(recipe)
    convert(
        base,
        recipe.max_positions,
        converted,
        attention=recipe.attention,
        attention_window=recipe.attention_window,
        position_init=recipe.position_init,
        revision=recipe.revision if base == recipe.base else None,
        force=True,
        steps=steps,
    )


def _pretrain(converted: Path, pretrained: Path, corpora, eval_corpora, args, steps: Steps) -> None:
    """Pretrain, continuing from the newest complete checkpoint of an interrupted build."""
    from longzoo.training.pretrain import CHECKPOINTS, pretrain

    resume = (pretrained / CHECKPOINTS).is_dir()
    pretrain(
        converted,
        corpora,
        pretrained,
        eval_corpora=eval_corpora,
        resume=resume,
        force=not resume,
        args=args,
        steps=steps,
    )


def _check_same_recipe(converted: Path, recipe: Recipe) -> None:
    """A finished conversion found in the build folder must be this recipe's, not another model's."""
    record = read_manifest(converted).convert
    expected = {Path(recipe.base).name, recipe.base, Path(recipe_base(recipe)).name}
    same = (record.max_positions, record.attention) == (recipe.max_positions, recipe.attention)
    if not same or record.base.id not in expected:
        raise LongzooError(
            f"{converted}: holds a {record.attention} conversion of {record.base.id} to {record.max_positions} "
            f"positions, not this recipe's {recipe.attention} {recipe.base} to {recipe.max_positions}; "
            "choose another --out"
        )


def _pretrain_arguments(recipe: Recipe, max_steps: int | None, seq_len: int | None):
    """The recipe's settings over ``PretrainArguments``' defaults, then the user's; checked."""
    from longzoo.training.arguments import PretrainArguments, cuda_available, override

    plan = recipe.pretrain
    given = {name: value for name, value in (("max_steps", max_steps), ("seq_len", seq_len)) if value is not None}
    if isinstance(max_steps, int) and "warmup_steps" in plan.settings:  # a shorter run warms up for a tenth of it
        given["warmup_steps"] = min(plan.settings["warmup_steps"], max_steps // 10)
    # the published fp16 recipes ran on GPUs; elsewhere the hardware decides (bf16 where native)
    precision = "auto" if plan.precision == "fp16" and not cuda_available() else plan.precision
    args = override(PretrainArguments(), **{**plan.settings, "precision": precision, **given})
    if args.seq_len is not None and args.seq_len > recipe.max_positions:
        raise LongzooError(f"--seq-len {args.seq_len} is above the recipe's {recipe.max_positions} positions")
    return args
