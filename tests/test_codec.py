import msgpack
import pytest

from shared.codec import (
    FeatureRecord,
    Hit,
    IndexEvent,
    MsgpackSerializer,
    SearchJob,
    SearchReply,
    decode_event,
    decode_feature_record,
    decode_job,
    decode_reply,
    encode_event,
    encode_feature_record,
    encode_job,
    encode_reply,
)
from shared.errors import CodecError


def test_job_round_trip_keeps_image_bytes() -> None:
    job = SearchJob(
        job_id="j1",
        collection="c" * 32,
        image=b"\xff\xd8\x00binary",
        deadline=1234.5,
        reply_key="k",
        max_results=3,
        min_score=12.5,
    )
    assert decode_job(encode_job(job)) == job


def test_reply_round_trip_with_hits_and_error() -> None:
    hit = Hit(item="i" * 32, image="m" * 32, score=87.5, corners=[[0.1, 0.2], [0.9, 0.2], [0.1, 0.8], [0.9, 0.8]])
    reply = SearchReply(job_id="j", hits=[hit], timings={"total": 3.5}, worker="w")
    assert decode_reply(encode_reply(reply)) == reply
    failed = SearchReply(job_id="j", error="IMAGE_NO_DETAILS")
    assert decode_reply(encode_reply(failed)).error == "IMAGE_NO_DETAILS"


def test_event_and_feature_record_round_trip() -> None:
    event = IndexEvent(op="add", collection="c", image="m")
    wire = {k.encode(): v for k, v in encode_event(event).items()}
    assert decode_event(wire) == event
    assert decode_feature_record(encode_feature_record("item", b"\x00\x01", "abc")) == FeatureRecord(
        "item", b"\x00\x01", "abc"
    )


def test_feature_record_of_before_the_extraction_digest_reads_as_unknown() -> None:
    legacy = msgpack.packb({"version": 1, "item": "item", "features": b"\x00"}, use_bin_type=True)
    assert decode_feature_record(legacy) == FeatureRecord("item", b"\x00", None)
    with pytest.raises(CodecError):
        decode_feature_record(msgpack.packb({"version": 1, "item": "i", "features": b"", "extraction": 7}))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"version": 99, "job_id": "x"}),
        msgpack.packb({"version": 1, "nope": 1}),
    ],
)
def test_bad_job_messages_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_job(data)


def test_event_without_payload_is_refused() -> None:
    with pytest.raises(CodecError):
        decode_event({b"x": b"1"})


def test_rq_serializer_round_trips_rq_job_tuple() -> None:
    envelope = ("workers.jobs.search", None, (b"payload",), {})
    func, instance, args, kwargs = MsgpackSerializer.loads(MsgpackSerializer.dumps(envelope))
    assert (func, instance, list(args), kwargs) == ("workers.jobs.search", None, [b"payload"], {})
