"""The request tree and its framing, without a daemon."""
import json

import pytest

from impasto.protocol import codec
from impasto.protocol.messages import (
    PROTOCOL_VERSION, ErrorCode, Generate, Image, Limits, Patch, Progress, ProtocolError, Result, Train,
    check_name, validate_job,
)


def edit_request(**kw):
    img = Image(3, 2, bytes(range(24)))
    mask = Image(3, 2, b"\x00\x80\xff\x00\x80\xff", "gray8")
    return Generate(job="j1", prompt="a cat", init_image=img, mask=mask, **kw)


def test_round_trip_with_images_in_own_frames():
    msg = edit_request(concepts=[("mycat", 0.8)], seed=7)
    frames = codec.encode(msg)
    assert len(frames) == 3
    assert frames[1] == bytes(range(24))           # raw bytes, not base64
    header = json.loads(frames[0])
    assert header["v"] == PROTOCOL_VERSION and header["type"] == "generate"
    assert header["init_image"] == {"$frame": 1, "width": 3, "height": 2, "format": "rgba8"}
    back = codec.decode(frames)
    assert back == msg and back.kind == "edit"
    assert back.concepts == [("mycat", 0.8)]


def test_nested_images_in_lists_and_patches():
    img = Image(1, 1, b"\x01\x02\x03\x04")
    res = Result(job="j", images=[img, img], seeds=[1, 2], patches=[Patch(5, 6, img)], timings={"total": 1.5})
    frames = codec.encode(res)
    assert len(frames) == 4
    assert codec.decode(frames) == res


def test_progress_preview_optional():
    assert codec.decode(codec.encode(Progress(job="a", step=1, total=2))).preview is None


@pytest.mark.parametrize("frames, code", [
    ([], ErrorCode.BAD_MESSAGE),
    ([b"{not json"], ErrorCode.BAD_MESSAGE),
    ([b"[1,2]"], ErrorCode.BAD_MESSAGE),
    ([json.dumps({"v": PROTOCOL_VERSION, "type": "nope"}).encode()], ErrorCode.BAD_MESSAGE),
    ([json.dumps({"v": 99, "type": "generate"}).encode()], ErrorCode.VERSION_MISMATCH),
    ([json.dumps({"v": PROTOCOL_VERSION, "type": "generate", "steps": "many"}).encode()], ErrorCode.BAD_FIELD),
    ([json.dumps({"v": PROTOCOL_VERSION, "type": "generate", "preview": 1}).encode()], ErrorCode.BAD_FIELD),
    ([json.dumps({"v": PROTOCOL_VERSION, "type": "cancel"}).encode(), b"extra"], ErrorCode.BAD_MESSAGE),
])
def test_decode_rejects_with_typed_errors(frames, code):
    with pytest.raises(ProtocolError) as err:
        codec.decode(frames)
    assert err.value.code == code


def test_version_mismatch_names_both_versions():
    with pytest.raises(ProtocolError) as err:
        codec.decode([json.dumps({"v": 7, "type": "hello"}).encode()])
    assert "7" in err.value.message and str(PROTOCOL_VERSION) in err.value.message


def test_image_bytes_must_match_declared_size():
    frames = codec.encode(edit_request())
    frames[1] = frames[1][:-1]
    with pytest.raises(ProtocolError) as err:
        codec.decode(frames)
    assert err.value.code == ErrorCode.BAD_FIELD and err.value.field == "init_image"


def test_missing_image_frame_is_bad_message():
    frames = codec.encode(edit_request())
    with pytest.raises(ProtocolError) as err:
        codec.decode(frames[:2])
    assert err.value.code == ErrorCode.BAD_MESSAGE


@pytest.mark.parametrize("field_name, value", [
    ("steps", 0), ("steps", 201), ("cfg_scale", -1.0), ("cfg_scale", 31.0), ("width", 0), ("height", -8),
    ("width", 9000), ("batch_size", 9), ("seed", -2),
])
def test_validate_ranges_name_the_field(field_name, value):
    msg = Generate(job="j", prompt="x", **{field_name: value})
    with pytest.raises(ProtocolError) as err:
        validate_job(msg)
    assert err.value.field == field_name
    assert err.value.code == ErrorCode.BAD_FIELD


def test_pixel_cap_is_configurable():
    msg = Generate(job="j", prompt="x", width=1024, height=1024)
    validate_job(msg)
    with pytest.raises(ProtocolError):
        validate_job(msg, Limits(max_pixels=512 * 512))


def test_unknown_sampler_code():
    with pytest.raises(ProtocolError) as err:
        validate_job(Generate(job="j", sampler="k_lms_magic"))
    assert err.value.code == ErrorCode.UNKNOWN_SAMPLER and err.value.field == "sampler"


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", "", "x" * 65, "bad\x00name"])
def test_names_with_path_separators_are_refused(name):
    with pytest.raises(ProtocolError):
        check_name(name)


def test_good_names_pass():
    for n in ("starter", "My Cat v2", "style_ink-1.5"):
        assert check_name(n) == n


def test_edit_validation():
    validate_job(edit_request())
    with pytest.raises(ProtocolError) as err:
        validate_job(edit_request(strength=1.5))
    assert err.value.field == "strength"
    bad = edit_request()
    bad.mask = Image(2, 2, b"\0" * 4, "gray8")
    with pytest.raises(ProtocolError) as err:
        validate_job(bad)
    assert err.value.field == "mask"


def test_train_validation():
    img = Image(2, 2, b"\0" * 16)
    validate_job(Train(job="t", name="cat", trigger="zwx", images=[img] * 3))
    with pytest.raises(ProtocolError) as err:
        validate_job(Train(job="t", name="cat", trigger="", images=[img]))
    assert err.value.field == "trigger"
    with pytest.raises(ProtocolError) as err:
        validate_job(Train(job="t", name="cat", trigger="zwx", images=[]))
    assert err.value.field == "images"


def test_job_id_checked():
    with pytest.raises(ProtocolError) as err:
        validate_job(Generate(job="has space"))
    assert err.value.field == "job"
