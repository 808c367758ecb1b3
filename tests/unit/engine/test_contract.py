"""The shared contract: request parsing and validation, geometry, quality table, names."""

from __future__ import annotations

import time
from fractions import Fraction

import msgspec
import pytest

from gpu_worker.contract import (
    QUALITY,
    SECONDS_PATTERN,
    Codec,
    ContractError,
    Format,
    Phase,
    ProgressReport,
    Quality,
    Segment,
    audio_spec,
    decode_request,
    export_channel,
    fit_size,
    format_seconds,
    parse_seconds,
    progress_key,
    user_channel,
)


def test_segment_times_parse_exactly_from_decimal_strings_and_numbers() -> None:
    request = decode_request(
        b'{"segments": [{"start": "1.5", "end": 2}, {"start": 0.1, "end": "1001/30000"}]}'
    )
    assert [(s.start, s.end) for s in request.segments] == [
        (Fraction(3, 2), Fraction(2)),
        (Fraction(1, 10), Fraction(1001, 30000)),
    ]


def test_codec_defaults_by_format() -> None:
    assert decode_request({"format": "mp4"}).codec is Codec.H264
    assert decode_request({"format": "webm"}).codec is Codec.VP9
    assert decode_request({"format": "mov"}).codec is Codec.H264


def test_unknown_fields_and_bad_enums_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="sharpness"):
        decode_request({"sharpness": 3})
    with pytest.raises(msgspec.ValidationError, match="resolution"):
        decode_request({"resolution": "999p"})


def test_non_numeric_segment_time_is_rejected_naming_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"segments\[0\]\.start"):
        decode_request({"segments": [{"start": "soon", "end": 2}]})


def test_exponent_strings_are_rejected_fast_naming_the_field() -> None:
    # Fraction("1e9999999") would build a ten-million-digit integer: seconds of CPU per request.
    began = time.perf_counter()
    with pytest.raises(msgspec.ValidationError, match=r"segments\[0\]\.end"):
        decode_request({"segments": [{"start": "0", "end": "1e9999999"}]})
    assert time.perf_counter() - began < 0.010


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E3",
        "-1",
        "+1",
        "1_000",
        " 1.",
        ".5",
        "1/0",
        "1.5/0",
        "nan",
        "inf",
        "1234567890",
        "\N{ARABIC-INDIC DIGIT ONE}",
    ],
)
def test_seconds_strings_outside_the_schema_pattern_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="must be a number of seconds"):
        parse_seconds(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.5", Fraction(25, 2)), (" 25/2 ", Fraction(25, 2)), ("1.5/3", Fraction(1, 2)), ("007", Fraction(7))],
)
def test_seconds_strings_matching_the_schema_pattern_parse_exactly(value: str, expected: Fraction) -> None:
    assert parse_seconds(value) == expected


@pytest.mark.parametrize("value", [10**9, -(10**9), 1e300, float("inf"), 10**400])
def test_huge_numbers_of_seconds_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        parse_seconds(value)


def test_schema_pattern_is_the_parser_pattern() -> None:
    schema = msgspec.json.schema(Segment, schema_hook=lambda t: {})
    start = schema["$defs"]["Segment"]["properties"]["start"]
    assert start["anyOf"][0] == {"type": "string", "pattern": f"^{SECONDS_PATTERN}$"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"segments": [{"start": 0, "end": 1}, {"start": 2, "end": 2}]}, "segments[1].end"),
        ({"segments": [{"start": 0, "end": 1}, {"start": 3, "end": 1}]}, "segments[1].end"),
        ({"segments": [{"start": -1, "end": 1}]}, "segments[0].start"),
        ({"segments": [{"start": 0, "end": "10.001"}]}, "segments[0].end"),
        ({"segments": [{"start": 0, "end": 1}] * 501}, "segments"),
        ({"format": "webm", "codec": "h264"}, "codec"),
        ({"format": "mov", "codec": "hevc"}, "codec"),
        ({"codec": "av1", "quality": "lossless"}, "quality"),
        ({"mode": "clips"}, "segments"),
    ],
)
def test_validation_names_the_bad_field(body: dict[str, object], field: str) -> None:
    request = decode_request(body)
    with pytest.raises(ContractError) as caught:
        request.validate(Fraction(10))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)


def test_500_segments_inside_the_video_are_valid() -> None:
    decode_request({"segments": [{"start": 0, "end": 10}] * 500}).validate(Fraction(10))


def test_empty_segment_list_means_the_whole_video() -> None:
    request = decode_request({})
    assert [(s.start, s.end) for s in request.spans(Fraction(7, 2))] == [(0, Fraction(7, 2))]


@pytest.mark.parametrize(
    ("size", "resolution", "rotation", "expected"),
    [
        ((1920, 1080), "720p", 0, (1280, 720)),
        ((1920, 1080), "source", 0, (1920, 1080)),
        ((3840, 2160), "480p", 0, (854, 480)),
        ((854, 480), "360p", 0, (640, 360)),
        ((1080, 1920), "720p", 0, (720, 1280)),
        ((1920, 1080), "720p", 90, (1280, 720)),
        ((1920, 1080), "360p", -90, (640, 360)),
        ((320, 180), "1080p", 0, (320, 180)),
        ((321, 181), "source", 0, (320, 180)),
        ((1279, 719), "720p", 0, (1278, 718)),
        ((2000, 1000), "720p", 0, (1280, 640)),
    ],
)
def test_fit_size_fits_the_turned_box_with_even_sides_and_never_upscales(
    size: tuple[int, int], resolution: str, rotation: int, expected: tuple[int, int]
) -> None:
    assert fit_size(*size, resolution, rotation) == expected


def test_fit_size_upscales_only_when_allowed() -> None:
    assert fit_size(640, 360, "720p", allow_upscale=True) == (1280, 720)


def test_every_offered_cpu_combination_has_a_table_entry() -> None:
    from gpu_worker.contract import FORMAT_CODECS

    for codecs in FORMAT_CODECS.values():
        for codec in codecs:
            for quality in Quality:
                if (codec, quality) == (Codec.AV1, Quality.LOSSLESS):
                    continue
                assert (codec, "cpu", quality) in QUALITY


def test_nvenc_entries_use_pynvvideocodec_keys() -> None:
    preset = QUALITY[(Codec.HEVC, "gpu", Quality.HIGH)]
    assert preset.encoder == "hevc_nvenc"
    assert preset.options == {
        "codec": "hevc",
        "preset": "P6",
        "tuning_info": "high_quality",
        "rc": "vbr",
        "cq": "19",
        "multipass": "qres",
        "lookahead": "20",
    }
    assert QUALITY[(Codec.H264, "gpu", Quality.LOSSLESS)].options["tuning_info"] == "lossless"


def test_audio_codec_follows_the_container() -> None:
    assert audio_spec(Format.MP4, Codec.H264).encoder == "aac"
    assert audio_spec(Format.MOV, Codec.H264).encoder == "aac"
    assert audio_spec(Format.MOV, Codec.PRORES).encoder == "pcm_s16le"
    assert audio_spec(Format.WEBM, Codec.VP9).encoder == "libopus"
    assert audio_spec(Format.WEBM, Codec.VP9).fixed_rate == 48000


def test_seconds_format_as_decimals_when_exact() -> None:
    assert [format_seconds(Fraction(x)) for x in ("12.5", "5", "1/1000", "1/3")] == [
        "12.5",
        "5",
        "0.001",
        "1/3",
    ]


def test_names_shared_with_the_web_side() -> None:
    assert progress_key(7) == "export:7:progress"
    assert export_channel(7) == "export:7"
    assert user_channel(3) == "user:3:exports"


def test_progress_percent() -> None:
    assert ProgressReport(Phase.RENDERING, 25, 100, 30.0, 2.5).percent == 25.0


def test_device_is_defined_once_and_shared_with_the_backends() -> None:
    from gpu_worker.contract import Device
    from gpu_worker.encoders import base

    assert base.Device is Device


def test_video_codec_is_the_requested_or_default_codec() -> None:
    assert decode_request({"format": "webm"}).video_codec is Codec.VP9
    assert decode_request({"format": "mp4", "codec": "hevc"}).video_codec is Codec.HEVC
