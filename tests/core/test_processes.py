"""app.core.processes: another live process of this host counts as a live peer; this process,
a process that has exited and impossible pids do not; the process id kept is this process's,
also in a forked child."""

from __future__ import annotations

import os
import subprocess
import sys

from app.core.processes import current_pid, is_live_peer
from tests.processes import in_fork


def test_a_running_child_is_a_live_peer_and_an_exited_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert is_live_peer(child.pid)
    finally:
        child.communicate(b"")
    assert child.returncode == 0
    assert not is_live_peer(child.pid)  # reaped: its pid names no process


def test_this_process_and_impossible_pids_are_not_peers() -> None:
    assert not is_live_peer(os.getpid())  # a predecessor that had our pid is dead
    assert not is_live_peer(0)
    assert not is_live_peer(-1)


def test_the_kept_process_id_is_renewed_in_a_forked_child() -> None:
    assert current_pid() == os.getpid()
    pid, said = in_fork(lambda: str(current_pid()).encode())
    assert int(said) == pid
    assert current_pid() == os.getpid()
