"""``longzoo zoo list|show|build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from longzoo.cli._app import (
    app,
    no_library_bars,
    out,
    print_eval_change,
    progress_display,
    steps_log,
)

zoo_app = typer.Typer(help="Ready recipes: list, show, build.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list", epilog="Example: longzoo zoo list --json")
def zoo_list(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print every recipe as one JSON list.")] = False,
) -> None:
    """The recipes: name, base, positions, languages (`zoo show NAME` for everything)."""
    import dataclasses
    import json

    from rich import box
    from rich.table import Table

    from longzoo.zoo.registry import RECIPES

    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in RECIPES.values()], indent=2, ensure_ascii=False))
        return
    # Four short columns fit 80 characters; a pipe gets plain rows without box drawing.
    table = Table(box=box.SIMPLE if out.is_terminal else None)
    for column in ("name", "base", "positions", "languages"):
        table.add_column(column, overflow="fold")  # wrap long ids rather than cut them
    for recipe in RECIPES.values():
        table.add_row(recipe.name, recipe.base, str(recipe.max_positions), ",".join(recipe.languages))
    out.print(table)


@zoo_app.command("show", epilog="Example: longzoo zoo show roberta-zh-4096")
def zoo_show(name: Annotated[str, typer.Argument(help="Recipe name, e.g. roberta-zh-4096.")]) -> None:
    """Everything a recipe fixes, as JSON."""
    import dataclasses
    import json

    from longzoo.zoo.registry import get_recipe

    recipe = get_recipe(name)
    print(json.dumps(dataclasses.asdict(recipe), indent=2, ensure_ascii=False))


@zoo_app.command("build", epilog="Example: longzoo zoo build minilm-4096 --max-steps 100")
def zoo_build(
    name: Annotated[str, typer.Argument(help="Recipe name.")],
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Replaces the recipe's corpus.")] = None,
    eval_corpus: Annotated[Optional[list[str]], typer.Option("--eval-corpus", help="Held-out text.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Replaces the recipe's steps.")] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Training length; default the recipe's.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Build folder; default ./NAME.")] = None,
    push_to: Annotated[Optional[str], typer.Option("--push", help="Publish the result as OWNER/NAME.")] = None,
) -> None:
    """convert -> pretrain -> eval -> card (-> push), resumable where it stopped."""
    from longzoo.progress import Steps
    from longzoo.zoo.build import build

    no_library_bars()
    with progress_display() as progress:  # live only at a terminal: steps, tokens/s, time left
        result = build(
            name,
            out=out_dir,
            corpora=corpus,
            eval_corpora=eval_corpus,
            max_steps=max_steps,
            seq_len=seq_len,
            push_to=push_to,
            steps=Steps(progress, log=steps_log),
        )
    if result.skipped:
        out.print(f"already done, skipped: {', '.join(result.skipped)}")
    print_eval_change(result.eval_before, result.eval_after)
    out.print(f"built {result.pretrained}")
    if result.repo_url:
        out.print(result.repo_url)
