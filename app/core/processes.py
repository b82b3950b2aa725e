"""This process's id, and the other processes of this host: is one of them alive? (files and
holds they own are left alone)"""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """This process's id, without a system call each time (`os.getpid` is one: nine a request
    from the metrics alone); a forked child gets its own at the fork."""
    return _pid


def is_live_peer(pid: int) -> bool:
    """True if `pid` is another live process (so files it owns must be left alone)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        # At start-up none of our own temp files exist yet: a match is a dead
        # predecessor that had the same pid (common in containers).
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
