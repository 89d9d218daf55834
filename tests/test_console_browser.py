"""The web console in a real headless browser, against the real stack: sign in, create a
collection and an item, upload references, see the thumbnail, try a photo.

Skipped where Debian's `chromium` and `chromium-driver` are not installed: they are a check for
developers who have them, not a dependency of the project or of CI.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.testing import imagegen
from shared.testing.stack import ADMIN_KEY, Stack
from tests import webdriver

pytestmark = pytest.mark.skipif(not webdriver.available(), reason="needs chromium and chromedriver")

# An item name that would run script if the page ever treated names as markup.
HOSTILE_NAME = '<img src=x onerror="document.title=1"> poster'
# The reference's corners in the query photo (TL, TR, BL, BR, pixels of a 640x480 photo).
CORNERS = np.array([[150, 90], [470, 120], [130, 400], [500, 380]], dtype=np.float32)
FRESH_SECONDS = 1.2  # a new reference is searchable 1 s after its 201


def _pictures(folder: Path) -> dict[str, Path]:
    reference = imagegen.textured(7, 480, 360)
    photo = imagegen.place(imagegen.clutter(900, 640, 480), reference, CORNERS)
    files = {
        "reference": imagegen.encode_jpeg(reference, 92),
        "too-small": imagegen.encode_jpeg(imagegen.textured(8, 60, 60), 92),
        "photo": imagegen.encode_jpeg(photo, 85),
    }
    for name, data in files.items():
        (folder / f"{name}.jpg").write_bytes(data)
    return {name: folder / f"{name}.jpg" for name in files}


def _visible(section: str) -> str:
    return f"return !document.getElementById('{section}').hidden"


def test_sign_in_create_upload_and_try_a_photo(stack: Stack, tmp_path: Path) -> None:
    pictures = _pictures(tmp_path)
    collection = f"console-{uuid.uuid4().hex[:8]}"
    with webdriver.chromium() as browser:
        browser.open(f"{stack.url}/")
        browser.wait(_visible("sign-in"))
        browser.type("#api-key", ADMIN_KEY)
        browser.click("#sign-in-form button")
        browser.wait(_visible("collections"))

        browser.type("#collection-name", collection)
        browser.click("#collection-form button")
        link = "[...document.querySelectorAll('#collection-rows a')].find(a => a.textContent === arguments[0])"
        browser.wait(f"return {link}", collection)
        browser.run(f"{link}.click()", collection)
        browser.wait(_visible("collection"))

        browser.type("#item-name", HOSTILE_NAME)
        browser.click("#item-form button")
        assert browser.wait("return document.querySelector('.item h4')?.textContent") == HOSTILE_NAME
        browser.type(".item input[type=file]", f"{pictures['reference']}\n{pictures['too-small']}")
        statuses = "return [...document.querySelectorAll('.uploads .status')].map(s => s.textContent)"
        browser.wait(f"{statuses}.filter(s => s !== 'uploading…').length === 2")
        uploaded, refused = browser.run(statuses)
        assert uploaded == "uploaded"
        assert refused.startswith("IMAGE_TOO_SMALL: ")
        thumbnail = "const img = document.querySelector('.gallery img'); return img?.complete && img.naturalWidth"
        assert browser.wait(thumbnail) == 120
        assert browser.run("return document.querySelector('.gallery .stars').textContent").count("★") >= 1

        time.sleep(FRESH_SECONDS)
        browser.click("#try summary")
        browser.type("#try-photo", str(pictures["photo"]))
        browser.click("#try-form button")
        found = browser.wait("return document.querySelector('#try-results .name')?.textContent")
        assert found == HOSTILE_NAME
        assert browser.run("return document.getElementById('try-canvas').width") == 640

        assert browser.run("return document.title") == "recog console"
        assert not [line for line in browser.console_log() if "Content Security Policy" in line]
