"""Create a sqlite database file whole or not at all.

Optuna and MLflow create their tables on first use. Two processes doing that at once on a
new file, or a Ctrl-C in the middle, leave a half-built database that fails every later
run. So a new database is built in a temporary file next to its place and then
hard-linked into place, which fails if another process got there first (its database is
then used, and ours dropped).

Every sqlite connection that Optuna or MLflow opens in a process of the tool uses
write-ahead logging without an fsync per commit (`use_write_ahead_log`): a trial makes
about twenty small commits, and in sqlite's default mode each one waits for the disk.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

PREFIX = "sqlite:///"
TEMPORARY_SUFFIX = ".tmp"

_listening = False


def _write_ahead_log(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    try:
        row = dbapi_connection.execute("PRAGMA database_list").fetchone()
        # A database being built aside stays in rollback mode: it is linked into place as
        # one file, and a write-ahead log would stay behind under the temporary name.
        if not row[2] or row[2].endswith(TEMPORARY_SUFFIX):
            return
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints only: a power cut can lose the last
        # commits but never corrupts the file (a lost trial is retried like a killed one).
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError:
        pass  # not a database: the first query says so, in the caller's words


def use_write_ahead_log() -> None:
    """From now on, every new sqlite connection of SQLAlchemy in this process (Optuna's
    storage and MLflow's tracking store) uses write-ahead logging; idempotent."""
    global _listening
    if _listening:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _write_ahead_log)
    _listening = True


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, None for another scheme."""
    return Path(url[len(PREFIX) :]) if url.startswith(PREFIX) else None


def ensure_database(url: str, initialise: Callable[[str], None]) -> None:
    """Make sure the sqlite database of ``url`` exists complete; other URLs pass through.

    ``initialise(temporary_url)`` creates the tables in a temporary database.
    """
    use_write_ahead_log()
    path = sqlite_file(url)
    if path is None or path.exists():
        return

    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
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


def existing_database_problem(path: Path, expected_table: str) -> str | None:
    """What is wrong with an existing sqlite file for its role, read without changing it:
    not a database, or a database of another kind (``expected_table`` missing while it has
    tables). None when the file does not exist, is empty, or fits."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        # Without a -wal file the main file holds everything, and reading it as immutable
        # creates no -wal or -shm files that a refused command would leave behind; with one,
        # another connection may hold tables there, and those files exist already.
        immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
        uri = f"{path.resolve().as_uri()}?mode=ro{immutable}"
        connection = sqlite3.connect(uri, uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        finally:
            connection.close()
    except sqlite3.Error as error:
        return str(error)
    if tables and expected_table not in tables:
        return f"a database without a {expected_table!r} table (another tool's?)"
    return None
