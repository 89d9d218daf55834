import io

import pytest
from starlette.datastructures import FormData, UploadFile

from api.forms import parse_bool, parse_search_form
from shared.config import Settings
from shared.errors import ImageMissing, ImageTooLarge, ParameterInvalid, TokenMissing, TokenWrong

SETTINGS = Settings.from_env({"RECOG_MAX_UPLOAD_BYTES": "2048"})
TOKEN = "0123456789abcdef"
pytestmark = pytest.mark.anyio


def form(**fields: object) -> FormData:
    return FormData(list(fields.items()))  # type: ignore[arg-type]


def image(data: bytes = b"\xff\xd8jpeg") -> UploadFile:
    return UploadFile(io.BytesIO(data), filename="q.jpg")


@pytest.mark.parametrize("text", ["true", "True", "1", "yes", "on", "ON"])
def test_true_spellings(text: str) -> None:
    assert parse_bool("bboxes", text) is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "off"])
def test_false_spellings(text: str) -> None:
    assert parse_bool("bboxes", text) is False


def test_other_boolean_text_is_refused() -> None:
    with pytest.raises(ParameterInvalid):
        parse_bool("bboxes", "maybe")


async def test_bbox_is_a_synonym_of_bboxes() -> None:
    parsed = await parse_search_form(form(token=TOKEN, image=image(), bbox="True"), SETTINGS)
    assert parsed.bboxes is True
    assert parsed.max_results == 10


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, TokenMissing),
        ({"token": "XYZ"}, TokenWrong),
        ({"token": TOKEN.upper()}, TokenWrong),
        ({"token": TOKEN}, ImageMissing),
        ({"token": TOKEN, "image": "not a file"}, ImageMissing),
        ({"token": TOKEN, "image": "IMG", "max_results": "abc"}, ParameterInvalid),
        ({"token": TOKEN, "image": "IMG", "max_results": "0"}, ParameterInvalid),
        ({"token": TOKEN, "image": "IMG", "max_results": "2.5"}, ParameterInvalid),
        ({"token": TOKEN, "image": "IMG", "min_score": "101"}, ParameterInvalid),
        ({"token": TOKEN, "image": "BIG"}, ImageTooLarge),
    ],
)
async def test_errors_in_client_order(fields: dict[str, str], error: type[Exception]) -> None:
    values: dict[str, object] = dict(fields)
    if values.get("image") == "IMG":
        values["image"] = image()
    elif values.get("image") == "BIG":
        values["image"] = image(b"x" * 4096)
    with pytest.raises(error):
        await parse_search_form(form(**values), SETTINGS)
