"""``python -m longzoo`` runs the CLI."""

from longzoo.cli import run

run()
