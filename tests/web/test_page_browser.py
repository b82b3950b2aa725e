"""The web page in a real browser: Playwright driving Debian's chromium (never a downloaded
browser) against a real uvicorn process.

A face photo shows its regions over the photo and its measurements; a photo without a face
shows advice; a phone-sized screen and the keyboard alone work; signing in shows credits and
"my images" with previews and delete. No console error, and no request leaves the origin
(every request is intercepted). Chromium: `TEST_CHROMIUM_BIN` (CI sets it: then a missing
browser or Playwright is a failure), else `chromium` on PATH, else the tests skip.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from skimage import data

from app.core.formats import enable_heif
from tests.factories import encode, photo_jpeg
from tests.logins import PASSWORD
from tests.processes import Server

pytestmark = pytest.mark.slow

CHROMIUM_ENV = "TEST_CHROMIUM_BIN"
# What Chromium itself logs for an HTTP error answer to fetch/XHR (not the page's code).
REFUSAL_LOG = re.compile(r"^Failed to load resource: the server responded with a status of 422\b")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The points of an SVG path where the page draws them (through its own transforms), in CSS pixels.
ON_SCREEN = """path => {
  const m = path.getScreenCTM();
  return path.getAttribute("d").match(/-?[0-9.]+,-?[0-9.]+/g).map((pair) => {
    const [x, y] = pair.split(",").map(Number);
    const p = new DOMPoint(x, y).matrixTransform(m);
    return [p.x, p.y];
  });
}"""


def chromium_path() -> str:
    """CI's chromium (`TEST_CHROMIUM_BIN`: must work), else one on PATH, else skip."""
    named = os.environ.get(CHROMIUM_ENV, "").strip()
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            pytest.fail(f"{CHROMIUM_ENV}={named} is not an executable")
        return named
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip(f"no chromium (apt-get install chromium, or set {CHROMIUM_ENV})")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get(CHROMIUM_ENV):
            pytest.fail("playwright is not installed (requirements-dev.txt)")
        pytest.skip("playwright is not installed (requirements-dev.txt)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web")
    started = Server(root / "data", root / "server.log")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


@dataclass
class Visit:
    """A page of the service with what it logged and every request it tried to send elsewhere."""

    page: Any
    origin: str
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def console_errors(self, allowed: re.Pattern[str] | None = None) -> list[str]:
        return [text for text in self.errors if allowed is None or not allowed.search(text)]


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Any]:
    contexts = []

    def _open(viewport: dict[str, int] = DESKTOP, **options: Any) -> Visit:
        context = browser.new_context(viewport=viewport, **options)
        contexts.append(context)
        page = context.new_page()
        visit = Visit(page, server.base_url)
        page.on("console", lambda msg: visit.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: visit.errors.append(f"uncaught: {exc}"))

        def intercept(route: Any) -> None:
            url = route.request.url
            if url.startswith(server.base_url + "/"):
                route.continue_()
            else:
                visit.outside.append(url)
                route.abort()

        page.route("**/*", intercept)
        page.goto(server.base_url + "/")
        page.locator("input[name=analyzer]").first.wait_for()
        return visit

    yield _open
    for context in contexts:
        context.close()


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def write_photo(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


def analyze(visit: Visit, photo: Path) -> None:
    """Choose `photo`, upload it and wait until every analysis has answered."""
    visit.page.set_input_files("#file", str(photo))
    visit.page.click("#analyze")
    expect(visit.page.locator("#status")).to_have_text(re.compile(r"^Done"), timeout=60_000)


def api_result(server: Server, body: bytes, analyzer: str) -> dict[str, Any]:
    """What the API answers for the same pixels (results depend on them, not on the id)."""
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        up = c.post("/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")})
        resp = c.post("/api/v1/analyze", json={"image_id": up.json()["image_id"], "analyzer": analyzer})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def inside(point: tuple[float, float], box: dict[str, float]) -> bool:
    x, y = point
    return box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]


def centre(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_a_face_photo_shows_its_regions_and_measurements(
    open_page: Any, server: Server, tmp_path: Path
) -> None:
    visit = open_page()
    page = visit.page
    analyze(visit, write_photo(tmp_path, "astronaut.jpg", photo_jpeg()))

    overlay = page.locator("#overlay")
    assert overlay.get_attribute("viewBox") == "0 0 512 512"
    # The overlay lies exactly over the photo.
    photo_box, overlay_box = page.locator("#photo").bounding_box(), overlay.bounding_box()
    assert all(abs(photo_box[k] - overlay_box[k]) < 1 for k in ("x", "y", "width", "height"))

    measured = api_result(server, photo_jpeg(), "skin-measure")
    regions = page.locator("#overlay path.region")
    names = {regions.nth(i).get_attribute("data-region") for i in range(regions.count())}
    assert names == set(measured["regions"])
    for key, metric in measured["metrics"].items():
        row = page.locator(f"#metrics-body tr[data-metric={key}]")
        assert row.locator("td").first.inner_text().endswith(metric["unit"]), key
        assert float(row.locator("meter").get_attribute("value")) == metric["score"], key
    assert f"Monk swatch {measured['metrics']['tone']['monk']}" in page.inner_text("#tone-summary")

    # The face's contours are in the aligned crop's coordinates; drawn through the inverse of
    # `transform`, the jaw line (the oval's first 17 points) lands on the jaw landmarks.
    face = api_result(server, photo_jpeg(), "face")
    contours = page.locator("#overlay path.contour")
    assert contours.count() == len(face["regions"])
    scale = photo_box["width"] / 512
    drawn = page.locator("path.contour[data-region=face_oval]").evaluate(ON_SCREEN)
    for (x, y), landmark in zip(drawn[:17], face["landmarks"][:17], strict=True):
        expected = (photo_box["x"] + landmark["x"] * scale, photo_box["y"] + landmark["y"] * scale)
        assert abs(x - expected[0]) < 1.5 and abs(y - expected[1]) < 1.5, ((x, y), expected)
    face_box = page.locator("#overlay rect.face").bounding_box()
    assert inside(centre(page.locator("path.region[data-region=forehead]").bounding_box()), face_box)

    top = api_result(server, photo_jpeg(), "classify")["predictions"]
    bars = page.locator("#classes li")
    assert bars.count() == len(top)
    assert bars.first.locator(".label").inner_text() == top[0]["label"]
    assert page.locator("#advice").is_hidden()
    assert visit.console_errors() == []
    assert visit.outside == []


def test_a_photo_without_a_face_gets_advice(open_page: Any, tmp_path: Path) -> None:
    visit = open_page()
    page = visit.page
    analyze(visit, write_photo(tmp_path, "coffee.jpg", encode(Image.fromarray(data.coffee()), "JPEG")))

    advice = page.locator("#advice")
    expect(advice).to_be_visible()
    assert "Face the camera" in advice.inner_text()
    assert {page.locator("#advice [data-code]").nth(i).get_attribute("data-code") for i in range(2)} == {
        "no_face_detected"
    }
    assert page.locator("#overlay path").count() == 0
    assert page.locator("#classes li").count() > 0  # the classification still answers
    # Only Chromium's own notes of the two 422 answers: nothing of the page's.
    assert visit.console_errors(allowed=REFUSAL_LOG) == []
    assert len(visit.errors) == 2
    assert visit.outside == []


def test_a_phone_sized_screen(open_page: Any, tmp_path: Path) -> None:
    visit = open_page(PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = visit.page
    analyze(visit, write_photo(tmp_path, "astronaut.jpg", photo_jpeg()))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#photo", "#overlay", "table.metrics", "#classes", "#analyze", "label[for=camera]"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    for selector in ("#analyze", "label[for=file]", "label[for=camera]"):
        assert page.locator(selector).bounding_box()["height"] >= 44, selector  # a finger's tap
    assert page.locator("#overlay path.region").count() > 0
    assert visit.console_errors() == []
    assert visit.outside == []


def test_the_keyboard_alone_is_enough(open_page: Any, tmp_path: Path) -> None:
    visit = open_page()
    page = visit.page
    photo = write_photo(tmp_path, "astronaut.jpg", photo_jpeg())

    def tab_to(element_id: str) -> None:
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} is not reachable with Tab")

    # Playwright asks the browser to intercept file choosers when the first "filechooser"
    # listener is added, and does not wait for the answer: a key pressed at once (as inside
    # `expect_file_chooser` alone) can beat it, and the chooser then opens unseen, so the wait
    # times out. Listening from here on, the Tab presses' round trips below all come after it.
    page.on("filechooser", lambda _chooser: None)
    tab_to("file")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(photo))
    expect(page.locator("#chosen")).to_contain_text("astronaut.jpg")
    # Choosing moves the focus to the button that uploads.
    assert page.evaluate("document.activeElement.id") == "analyze"
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(re.compile(r"^Done"), timeout=60_000)
    assert page.locator("#overlay path.region").count() > 0
    tab_to("show-overlay")
    page.keyboard.press("Space")
    expect(page.locator("#overlay")).to_be_hidden()
    assert visit.console_errors() == []


def test_sign_in_shows_credits_and_my_images_with_previews(
    open_page: Any, server: Server, tmp_path: Path
) -> None:
    username = f"web-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=server.base_url) as c:
        resp = c.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
        assert resp.status_code == 201
        credits_before = resp.json()["credits"]
    visit = open_page()
    page = visit.page
    page.click("#signin-box summary")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#signin")
    expect(page.locator("#who")).to_have_text(username)
    expect(page.locator("#credits")).to_have_text(str(credits_before))
    expect(page.locator("#my-images-empty")).to_be_visible()

    analyze(visit, write_photo(tmp_path, "astronaut.jpg", photo_jpeg()))
    # Model-backed analyses cost a credit each for a signed-in user.
    expect(page.locator("#credits")).not_to_have_text(str(credits_before))
    assert int(page.inner_text("#credits")) < credits_before
    item = page.locator("#gallery li")
    expect(item).to_have_count(1)
    preview = item.locator("img")
    expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
    natural = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [128, 128]  # the 128-pixel preview of the 512 x 512 photo
    image_id = item.get_attribute("data-image-id")

    item.locator("button.danger").click()
    expect(item.locator("button.danger")).to_have_text("Really delete?")
    item.locator("button.danger").click()
    expect(page.locator("#gallery li")).to_have_count(0)
    with httpx.Client(base_url=server.base_url) as c:
        token = c.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD}).json()
        gone = c.get(
            f"/api/v1/images/{image_id}", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
    assert gone.status_code == 404
    assert visit.console_errors() == []
    assert visit.outside == []


def test_a_type_the_browser_cannot_show_is_shown_from_its_preview(open_page: Any, tmp_path: Path) -> None:
    """A photo the browser cannot decode (HEIC in Chromium) is shown from the service's JPEG
    preview, with the regions drawn in the photo's own pixel space."""
    enable_heif()
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "HEIF", quality=90)
    visit = open_page()
    page = visit.page
    analyze(visit, write_photo(tmp_path, "astronaut.heic", buf.getvalue()))
    photo = page.locator("#photo")
    expect(photo).to_have_attribute("src", re.compile(r"^blob:"))
    expect(page.locator("#overlay path.region")).not_to_have_count(0)
    for _ in range(100):  # the preview arrives after the local file failed to decode
        if photo.evaluate("img => img.naturalWidth") > 0:
            break
        page.wait_for_timeout(100)
    assert photo.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [512, 512]
    assert page.locator("#overlay").get_attribute("viewBox") == "0 0 512 512"
    assert visit.outside == []
