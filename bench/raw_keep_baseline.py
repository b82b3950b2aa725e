"""The shared raw ASGI baseline, keeping its files instead of unlinking them after the rename.

The shared baseline deletes each upload right after publishing it, so its fsync and
page-cache costs are those of a directory that never grows. A real upload service keeps
what it stores; measuring the same baseline with its files kept shows how much of the gap
is that difference. Informational only: `bench/run.py --baseline bench/raw_keep_baseline.py`.
"""

import importlib.util
import os
import types
from pathlib import Path

_default = Path(__file__).resolve().parents[2] / "shared" / "bench" / "raw_baseline.py"
_path = Path(os.environ.get("RAW_BASELINE", _default))
_spec = importlib.util.spec_from_file_location("raw_baseline", _path)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
# The module calls os.unlink once per upload, right after os.replace: make that a no-op.
_os = {name: getattr(os, name) for name in dir(os)}
_module.os = types.SimpleNamespace(**{**_os, "unlink": lambda path: None})

app = _module.app
