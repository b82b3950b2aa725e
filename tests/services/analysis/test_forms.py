"""app.services.analysis.forms: a streamed form's image is classified and nothing of it stays on
disk; a form without an image hands back its text field; `check_text` refuses a form before
anything is analyzed (the service of a running app on a tmp data dir)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from app.core.config import Settings
from app.services.accounts.principals import Principal
from app.services.analysis.forms import FormClassifier, FormOutcome
from tests.conftest import files_under
from tests.factories import encode
from tests.logins import running

ANONYMOUS = Principal(id="anonymous", kind="anonymous")
BOUNDARY = "mirror-form-boundary"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (field, filename or None, content) parts."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += b"Content-Type: image/jpeg\r\n" if filename else b""
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


async def chunks_of(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def process(
    forms: FormClassifier, body: bytes, check: Callable[[str], object] | None = None
) -> FormOutcome:
    return await forms.process(
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        content_length=len(body),
        chunks=chunks_of(body),
        file_field="image",
        text_field="data",
        analyzer="classify",
        params={"top_k": 3},
        caller=ANONYMOUS,
        check_text=check,
    )


def stored(data_dir: Path) -> list[str]:
    """The files under the data dir but the database's."""
    return [name for name in files_under(data_dir) if not name.startswith("service.db")]


def refuse(text: str) -> None:
    raise ValueError(f"refused {text}")


async def test_an_image_is_classified_and_nothing_stays(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with running(make_settings()) as app:
        forms: FormClassifier = app.state.services.forms
        before = stored(data_dir)
        photo = encode(Image.fromarray(data.chelsea()), "JPEG", quality=90)
        outcome = await process(forms, form(("image", "cat.jpg", photo)))
        assert outcome.text is None and outcome.size == (451, 300)
        assert outcome.result is not None and len(outcome.result.predictions) == 3  # type: ignore[attr-defined]
        text_only = await process(forms, form(("data", None, b'{"a": 1}')))
        assert text_only == FormOutcome(result=None, text='{"a": 1}')
        with pytest.raises(ValueError, match="refused"):
            await process(forms, form(("data", None, b"x"), ("image", "cat.jpg", photo)), refuse)
        assert stored(data_dir) == before  # no temp file of any form left
