"""The ``longzoo`` command line: thin typer wrappers over library functions, one module per command group.

Importing this package registers every command on :data:`app`, in the order ``--help`` lists them.
"""

from longzoo.cli import convert, training, zoo  # noqa: F401 - registers the commands
from longzoo.cli._app import app, error_line, run

__all__ = ["app", "error_line", "run"]
