"""Create a sqlite database file whole or not at all.

Optuna and MLflow create their tables on first use. Two processes doing that at once on a
new file, or a Ctrl-C in the middle, leave a half-built database that fails every later
run. So a new database is built in a temporary file next to its place and then
hard-linked into place, which fails if another process got there first (its database is
then used, and ours dropped).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

PREFIX = "sqlite:///"


def ensure_database(url: str, initialise: Callable[[str], None]) -> None:
    """Make sure the sqlite database of ``url`` exists complete; other URLs pass through.

    ``initialise(temporary_url)`` creates the tables in a temporary database.
    """
    if not url.startswith(PREFIX):
        return
    path = Path(url[len(PREFIX) :])
    if path.exists():
        return

    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        initialise(PREFIX + temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
