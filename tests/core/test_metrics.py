"""app.core.metrics: the exposition sums the value files of every process in the multiprocess
directory, `initialize` creates every series at zero before its first event, and
`clear_dead_processes` drops the files of processes that are gone; a forked child counts in
a file of its own."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import Counter

from app.core import metrics
from tests.processes import in_fork

CHILD = """
import os
from prometheus_client import Counter
Counter("mirror_child_events", "Events a finished child process counted").inc(7)
print(os.getpid())
"""


def test_initialize_creates_every_series_at_zero() -> None:
    metrics.initialize(["mirror_analyzer"], ("mirror_class",))
    text = metrics.exposition().decode()
    assert 'analyses_total{analyzer="mirror_analyzer",outcome="computed"} 0.0' in text
    assert 'analysis_queue_depth{analyzer="mirror_analyzer"} 0.0' in text
    assert 'rate_limited_total{limit="mirror_class"} 0.0' in text
    # A fixed label set: present, at whatever value earlier tests in this process left it
    assert 'dependency_errors_total{dependency="database",use="request"} ' in text


def test_a_finished_process_counts_until_its_files_are_cleared() -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics.METRICS_DIR)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, check=True, text=True)
    pid = int(done.stdout)
    files = list(metrics.METRICS_DIR.glob(f"*_{pid}.db"))
    assert files
    assert "mirror_child_events_total 7.0" in metrics.exposition().decode()
    metrics.clear_dead_processes()
    assert not any(path.exists() for path in files)
    assert "mirror_child_events_total" not in metrics.exposition().decode()


def test_a_forked_child_counts_in_a_file_of_its_own() -> None:
    # The fork check runs on the process id that app.core.processes keeps: if the child kept
    # its parent's, it would write into the parent's file (the sum would not tell).
    counter = Counter("mirror_forked_events", "Events counted on both sides of a fork", registry=None)
    counter.inc(1)

    def count() -> bytes:
        counter.inc(5)
        return b"counted"

    pid, said = in_fork(count)
    assert said == b"counted"
    assert list(metrics.METRICS_DIR.glob(f"counter_{pid}.db"))
    assert "mirror_forked_events_total 6.0" in metrics.exposition().decode()
