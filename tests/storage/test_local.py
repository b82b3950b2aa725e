"""Local storage: atomic publication and start-up recovery after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from app.storage.atomic import TEMP_PREFIX, atomic_create, sweep_temp_files, temp_path_for
from app.storage.base import result_key
from app.storage.local import LocalImageStore, LocalResultStore
from tests.conftest import files_under


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
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    keys = [result_key(a), result_key(a, "classify"), result_key(a, "classify.0123"), result_key(b)]
    keys.append(result_key(b, "face"))
    for key in keys:
        assert store.create(key, key.encode())
    assert [store.read(key) for key in keys] == [key.encode() for key in keys]
    assert files_under(tmp_path) == sorted(
        [f"{a}.json", f"{a}/classify.json", f"{a}/classify.0123.json", f"{b}.json", f"{b}/face.json"]
    )
    assert store.delete_for_image(a) == 3
    assert store.delete_for_image(a) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{b}.json", b])  # a's folder is gone
    assert not store.exists(result_key(a, "classify")) and store.read(result_key(a, "classify")) is None
    assert temp_path_for(tmp_path).name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")


def test_result_keys_of_an_image_share_its_prefix_and_no_other_does() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    for key in (result_key(a), result_key(a, "face"), result_key(a, "skin-measure.0123")):
        assert key.startswith(a) and not key.startswith(b)


def test_a_result_published_after_its_folder_was_deleted_recreates_it(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    image = str(uuid.uuid4())
    store.create(result_key(image, "face"), b"1")
    store.delete_for_image(image)
    assert store.create(result_key(image, "face"), b"2")  # the folder comes back
    store.replace(result_key(image, "face"), b"3")
    assert store.read(result_key(image, "face")) == b"3"
    assert files_under(tmp_path) == [f"{image}/face.json"]  # temp files went to the root, and away


def test_recover_moves_the_flat_layout_into_folders_and_sweeps_temp_files(tmp_path: Path) -> None:
    """A data dir of an earlier version (`{id}.{analyzer}[.{hash}].json` beside `{id}.json`)."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    flat = {
        f"{a}.json": b"skin a",
        f"{a}.classify.json": b"classify a",
        f"{a}.skin-measure.0123456789abcdef.json": b"measure a",
        f"{b}.face.json": b"face b (old)",
        "notes.json": b"not ours",
        f"{TEMP_PREFIX}{dead}-abc": b"partial",
    }
    for name, data in flat.items():
        (tmp_path / name).write_bytes(data)
    # A crash half-way through an earlier migration: b's face result is linked, not yet unlinked,
    # and a newer result was published under the new name since.
    (tmp_path / b).mkdir()
    (tmp_path / b / "face.json").write_bytes(b"face b (new)")
    store = LocalResultStore(tmp_path)
    store.recover()
    assert files_under(tmp_path) == sorted(
        [
            f"{a}.json",
            f"{a}/classify.json",
            f"{a}/skin-measure.0123456789abcdef.json",
            f"{b}/face.json",
            "notes.json",
        ]
    )
    assert store.read(result_key(a)) == b"skin a"
    assert store.read(result_key(a, "classify")) == b"classify a"
    assert store.read(result_key(b, "face")) == b"face b (new)"
    store.recover()  # a second start-up changes nothing
    assert len(files_under(tmp_path)) == 5
    assert store.delete_for_image(a) == 3 and store.delete_for_image(b) == 1
    assert files_under(tmp_path) == ["notes.json"]
