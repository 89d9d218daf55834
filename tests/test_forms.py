import io

import pytest
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message

from api.forms import parse_bool, parse_search_form, read_form
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


TOKEN_PART = b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + TOKEN.encode() + b"\r\n"
IMAGE_PART = b'--b\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n\xff\xd8jpeg\r\n'


class Upload:
    """A multipart request whose body arrives in `chunks`, counting the chunks read so far."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.read = 0

    async def receive(self) -> Message:
        self.read += 1
        return {"type": "http.request", "body": self.chunks[self.read - 1], "more_body": self.read < len(self.chunks)}

    def request(self) -> Request:
        headers = [(b"content-type", b"multipart/form-data; boundary=b")]
        return Request({"type": "http", "method": "POST", "headers": headers}, self.receive)


async def test_an_early_check_runs_before_the_rest_of_the_body_is_read() -> None:
    upload = Upload(TOKEN_PART + b"--b\r\n", IMAGE_PART[5:], b"--b--\r\n")
    seen: list[tuple[str, int]] = []

    async def check(token: str) -> None:
        seen.append((token, upload.read))

    form = await read_form(upload.request(), SETTINGS, early={"token": check})
    assert seen == [(TOKEN, 1)]  # with the first chunk only: the part ends with the next boundary
    assert isinstance(form.get("image"), UploadFile)
    await form.close()


async def test_an_early_check_refuses_the_request_and_sees_only_the_first_field_of_its_name() -> None:
    upload = Upload(TOKEN_PART + TOKEN_PART.replace(TOKEN.encode(), b"f" * 16) + b"--b", IMAGE_PART[3:] + b"--b--\r\n")
    seen: list[str] = []

    async def check(token: str) -> None:
        seen.append(token)
        raise TokenWrong()

    with pytest.raises(TokenWrong):
        await read_form(upload.request(), SETTINGS, early={"token": check})
    assert seen == [TOKEN] and upload.read == 1


async def test_a_check_that_times_out_is_not_taken_for_a_slow_body() -> None:
    async def check(token: str) -> None:
        raise TimeoutError  # e.g. its own limit on a Redis call

    with pytest.raises(TimeoutError):
        await read_form(Upload(TOKEN_PART + IMAGE_PART + b"--b--\r\n").request(), SETTINGS, early={"token": check})
