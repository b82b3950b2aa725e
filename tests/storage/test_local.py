"""Local storage: atomic publication and start-up recovery after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from app.storage.atomic import TEMP_PREFIX, atomic_create, sweep_temp_files, temp_path_for
from app.storage.local import LocalImageStore, LocalResultStore


def test_publish_then_recover_keeps_complete_images(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    temp = store.temp_path()
    temp.write_bytes(b"jpeg bytes")
    store.publish(temp, "id-1", "jpg", b'{"image_id": "id-1"}')
    store.recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id-1.jpg", "id-1.json"]
    assert store.read_metadata("id-1") == b'{"image_id": "id-1"}'


def test_recover_removes_dead_temp_files_and_orphans(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / f"{TEMP_PREFIX}{dead}-abc").write_bytes(b"partial")
    (tmp_path / f"{TEMP_PREFIX}{os.getpid()}-def").write_bytes(b"from a predecessor with our pid")
    (tmp_path / "orphan.jpg").write_bytes(b"image without metadata")
    (tmp_path / "kept.png").write_bytes(b"png")
    (tmp_path / "kept.json").write_bytes(b"{}")
    LocalImageStore(tmp_path).recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "kept.png"]


def test_sweep_leaves_live_peers_alone(tmp_path: Path) -> None:
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f"{TEMP_PREFIX}{peer.pid}-abc"
        live.write_bytes(b"in flight")
        assert sweep_temp_files(tmp_path) == 0
        assert live.exists()
    finally:
        peer.kill()
        peer.wait()


def test_atomic_create_has_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: wins.append(atomic_create(target, f"writer {i}".encode())))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert target.read_bytes().startswith(b"writer ")
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_result_store_deletes_all_results_of_one_image(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    for name in ("a.json", "a.classify.json", "a.classify.0123.json", "ab.json", "b.json"):
        store.create(name, b"{}")
    assert store.delete_for_image("a") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab.json", "b.json"]
    assert temp_path_for(tmp_path).name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
