"""The sandbox wire format and the helpers the child shares with the trusted path."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from agent.plugins import _child
from agent.plugins.interface import HIDDEN_ATTR, Strategy


def test_messages_survive_arbitrary_chunking() -> None:
    values = np.linspace(-1, 1, 50)
    stream = _child.pack_message({"type": "result", "n": 1}, _child.encode_array(values))
    stream += _child.pack_message({"type": "ready"})
    reader = _child.MessageReader(max_payload_bytes=10_000)
    received: list[tuple[dict[str, object], bytes]] = []
    for at in range(0, len(stream), 7):
        received.extend(reader.feed(stream[at : at + 7]))
    assert [header for header, _ in received] == [{"type": "result", "n": 1}, {"type": "ready"}]
    np.testing.assert_array_equal(_child.decode_array(received[0][1]), values)
    assert received[1][1] == b""


def test_an_oversized_reply_is_refused_before_it_is_buffered() -> None:
    reader = _child.MessageReader(max_payload_bytes=100)
    blob = _child.pack_message({"type": "result"}, b"x" * 101)
    with pytest.raises(ValueError, match="more than the"):
        list(reader.feed(blob[:20]))


def test_a_reply_header_must_be_a_json_object() -> None:
    reader = _child.MessageReader(max_payload_bytes=100)
    blob = b"[1, 2]"
    framed = _child.PREFIX.pack(len(blob), 0) + blob
    with pytest.raises(ValueError, match="not a JSON object"):
        list(reader.feed(framed))


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested 100000 deep"),
        (b'{"a": ' * 9 + b"1" + b"}" * 9, "nested 9 deep"),
        (b'{"x": NaN}', "the number NaN"),
        (b'{"x": 1' + b"0" * 5_000 + b"}", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'"text"', "not a JSON object"),
    ],
)
def test_a_forged_reply_header_is_refused_with_a_value_error(blob: bytes, match: str) -> None:
    reader = _child.MessageReader(max_payload_bytes=100, max_header_bytes=1 << 20)
    with pytest.raises(ValueError, match=match):
        list(reader.feed(_child.PREFIX.pack(len(blob), 0) + blob))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    blob = b'{"message": "[[[[[[[[[[[[\\"{{{{{{{{{{{"}'
    assert _child.json_depth(blob) == 1
    assert _child.parse_header(blob)["message"].startswith("[[[")


def test_an_oversized_reply_header_is_refused_from_its_prefix() -> None:
    reader = _child.MessageReader(max_payload_bytes=100)
    framed = _child.PREFIX.pack(_child.MAX_REPLY_HEADER_BYTES + 1, 0)
    with pytest.raises(ValueError, match="more than the"):
        list(reader.feed(framed))


def test_arrays_that_would_need_pickle_are_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        _child.decode_array(buffer.getvalue())


def test_a_request_round_trips_through_a_stream() -> None:
    candles = pd.DataFrame(
        {
            "open_time": [0, 3_600_000, 7_200_000],
            "open": [1.0, 2.0, 3.0],
            "high": [1.5, 2.5, 3.5],
            "low": [0.5, 1.5, 2.5],
            "close": [2.0, 3.0, 4.0],
            "volume": [10.0, 11.0, 12.0],
        }
    )
    arrays = _child.frame_arrays(candles, {"planted": np.array([0.1, 0.2, 0.3])})
    header = {"arrays": len(arrays), "frames": [{"hidden": ["planted"]}]}
    blob = _child.pack_message(header) + b"".join(
        _child.pack_message({"array": i}, _child.encode_array(a)) for i, a in enumerate(arrays)
    )
    request, received = _child.read_request(io.BytesIO(blob))
    assert request == header
    (frame,) = _child._frames(request, received)
    pd.testing.assert_frame_equal(frame, candles)
    np.testing.assert_array_equal(frame.attrs[HIDDEN_ATTR]["planted"], [0.1, 0.2, 0.3])


class Misaligned(Strategy):
    name = "misaligned"

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        return candles["close"].sort_values(ascending=False) / 1e6


class Words(Strategy):
    name = "words"

    def signal(self, candles: pd.DataFrame) -> list[str]:
        return ["up"] * len(candles)


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (Misaligned(), "returned a series whose index is not the candles' index"),
        (Words(), "returned something that is not numbers: could not convert string"),
    ],
)
def test_output_that_is_not_one_number_per_candle_is_an_output_error(
    strategy: Strategy, message: str
) -> None:
    candles = pd.DataFrame({"close": [3.0, 1.0, 2.0]})
    with pytest.raises(_child.OutputError, match=message):
        _child.call_strategy(strategy, candles)


def test_exceptions_are_described_with_the_plugins_own_line() -> None:
    def plugin_code() -> None:
        raise ValueError("bad window\n\x1b[31m")

    try:
        plugin_code()
    except ValueError as e:
        text = _child.describe_exception(e, __file__)
    assert text.startswith("ValueError: bad window ")
    assert "\x1b" not in text and "\n" not in text  # control characters are blanked
    assert " (test_child_protocol.py, line " in text
    syntax = SyntaxError("invalid syntax", ("/p/x.py", 3, 1, "x y"))
    assert _child.describe_exception(syntax) == "SyntaxError: invalid syntax (/p/x.py, line 3)"
    assert len(_child.describe_exception(RuntimeError("x" * 5_000))) < 500
