"""Files and folders only their owner can read: var/, the SQLite database
(it holds the session keys), the generated secret key.

Plain os/stat, no Django: the settings module uses it while it is being read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def tighten(path: str | Path, mode: int) -> None:
    """chmod `path` to `mode` if it grants more than that and this process owns it.

    Best effort: a missing file, one that belongs to someone else or a shared
    sticky directory (/tmp) is left as it is."""
    try:
        info = os.stat(path)
    except OSError:
        return
    current = stat.S_IMODE(info.st_mode)
    if current & ~mode == 0 or info.st_uid != os.geteuid() or current & stat.S_ISVTX:
        return
    try:
        os.chmod(path, current & mode)
    except OSError:
        pass


def owner_only_dir(path: Path) -> Path:
    """Create `path` (0700), or take group and other access away from an existing one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tighten(path, 0o700)
    return path


def owner_only_sqlite(name: str | Path) -> None:
    """Before SQLite opens `name`: create the file 0600 if it is missing (SQLite
    then gives its -wal, -shm and -journal files the same mode), and take group
    and other access away from an existing one and its companions."""
    name = str(name)
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # no such folder, read-only...: SQLite says so itself
    for path in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
        tighten(path, 0o600)


def generated_secret_key(path: Path) -> str:
    """The key kept in `path`, generated (0600) the first time.

    Created whole or not at all: the key goes into a private temporary file
    that is then linked into place, so two processes starting together agree
    on one key and never read a half-written file."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race: use its key
        finally:
            tmp.unlink(missing_ok=True)
    tighten(path, 0o600)
    return path.read_text().strip()
