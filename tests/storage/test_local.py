"""Local storage: atomic publication and start-up recovery after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from app.storage.atomic import TEMP_PREFIX, atomic_create, sweep_temp_files, temp_path_for
from app.storage.local import LocalImageStore, LocalResultStore


def test_publish_places_the_bytes_and_lists_them(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    temp = store.temp_path()
    temp.write_bytes(b"jpeg bytes")
    image_id = str(uuid.uuid4())
    assert store.publish(temp, image_id, "jpg") == tmp_path / f"{image_id}.jpg"
    store.recover()
    assert [(f.image_id, f.extension) for f in store.files()] == [(image_id, "jpg")]
    assert store.exists(image_id, "jpg") and not store.exists(image_id, "png")
    store.delete(image_id, "jpg")
    store.delete(image_id, "jpg")  # already gone: no error
    assert list(tmp_path.iterdir()) == []


def test_recover_removes_dead_temp_files_and_lists_what_is_ours(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / f"{TEMP_PREFIX}{dead}-abc").write_bytes(b"partial")
    (tmp_path / f"{TEMP_PREFIX}{os.getpid()}-def").write_bytes(b"from a predecessor with our pid")
    image, legacy = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / f"{image}.jpg").write_bytes(b"image")
    (tmp_path / f"{legacy}.png").write_bytes(b"png")
    (tmp_path / f"{legacy}.json").write_bytes(b"{}")
    (tmp_path / "notes.txt").write_bytes(b"not ours")
    store = LocalImageStore(tmp_path)
    store.recover()
    assert sorted(f.image_id for f in store.files()) == sorted([image, legacy])
    assert [image_id for image_id, _ in store.legacy_metadata()] == [legacy]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{image}.jpg", f"{legacy}.json", f"{legacy}.png", "notes.txt"]
    )


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
