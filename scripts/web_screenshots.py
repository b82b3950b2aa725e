"""Screenshots of the web page for the README: a face photo's results on a desktop screen and
a photo without a face on a phone-sized one (Playwright driving Debian's chromium).

    .venv/bin/python -m uvicorn app.main:app --port 8000 &
    .venv/bin/python scripts/web_screenshots.py --base-url http://127.0.0.1:8000 --out docs
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage import data

SHOTS = (
    ("web-face-desktop.png", {"width": 1280, "height": 900}, data.astronaut),
    ("web-advice-phone.png", {"width": 390, "height": 844}, data.coffee),
)


def main() -> None:
    """Upload each photo through the page and save a full-page screenshot of the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium)
        for name, viewport, photo in SHOTS:
            path = Path(tmp) / f"{photo.__name__}.jpg"
            buf = io.BytesIO()
            Image.fromarray(photo()).save(buf, "JPEG", quality=90)
            path.write_bytes(buf.getvalue())
            page = browser.new_page(viewport=viewport, device_scale_factor=1)
            page.goto(args.base_url + "/")
            page.locator("input[name=analyzer]").first.wait_for()
            page.set_input_files("#file", str(path))
            page.click("#analyze")
            expect(page.locator("#status")).to_have_text(re.compile(r"^Done"), timeout=60_000)
            page.locator("#results").scroll_into_view_if_needed()
            page.screenshot(path=str(args.out / name), full_page=True)
            page.close()
            print(args.out / name)
        browser.close()


if __name__ == "__main__":
    main()
