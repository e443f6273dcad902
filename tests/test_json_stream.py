"""The JSON stream decoder on its own: framing, early errors, resynchronising, limits."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from neochat.wire.json_stream import MAX_DEPTH, JsonStreamDecoder, Malformed, RawChunk
from tests.test_seed000_readings import VALID_REQUESTS, mutate, mutations

REGISTER = {"message_type": "register", "username": "x", "password": "y"}


def decode(*chunks, decoder=None):
    decoder = decoder or JsonStreamDecoder()
    items = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (item := decoder.next_item()) is not None:
            items.append(item)
    return items


def reasons(items):
    return [item.reason if isinstance(item, Malformed) else item for item in items]


@pytest.mark.parametrize("separator", [b"", b"\n", b"\r\n", b" \n\n "])
def test_objects_back_to_back_or_on_lines_split_anywhere(separator):
    data = separator.join(json.dumps(dict(REGISTER, n=n)).encode() for n in range(3)) + separator
    whole = decode(data)
    assert whole == [dict(REGISTER, n=n) for n in range(3)]
    assert decode(*(data[i:i + 1] for i in range(len(data)))) == whole


def test_numbers_read_as_json_reads_them():
    """Integers past 64 bits stay exact (orjson, the fast path, would make them
    floats); NaN and Infinity are refused, 1e400 is read as Python reads it."""
    big = 2 ** 64 + 1
    assert decode(b'{"n": %d, "m": -%d}\n' % (big, big)) == [{"n": big, "m": -big}]
    assert decode(b'{"n": 1e400}\n') == [{"n": float("inf")}]
    assert reasons(decode(b'{"n": NaN}\n{"n": Infinity}\n')) == ["malformed JSON"] * 2


def test_an_object_that_cannot_become_valid_is_reported_at_once():
    decoder = JsonStreamDecoder()
    assert reasons(decode(b'{"message_type": x', decoder=decoder)) == ["malformed JSON"]
    assert decode(b'yz, "a": {"b": [1]}}' + json.dumps(REGISTER).encode(), decoder=decoder) == [REGISTER]


def test_a_value_never_finished_ends_where_a_line_starts_with_a_brace():
    register = json.dumps(REGISTER).encode()
    for pending in (b'{"a": ', b'{"a": [1], ', b"[", b'[1, ', b'{"a": {"b": 1}'):
        assert reasons(decode(pending + b"\n", register)) == ["malformed JSON", REGISTER]


def test_an_array_of_objects_inside_an_object_may_put_braces_at_line_starts():
    pretty = json.dumps({"message_type": "ack", "items": [{"a": 1}, {"b": [{"c": 2}]}]}, indent=2).encode()
    assert decode(pretty) == [json.loads(pretty)]


def test_nesting_and_length_limits_are_reported_before_the_value_ends():
    decoder = JsonStreamDecoder(max_object=1000)
    assert reasons(decode(b"[" * (MAX_DEPTH + 1), decoder=decoder)) == [f"nesting too deep (limit {MAX_DEPTH})"]
    assert decode(b"]" * (MAX_DEPTH + 1) + json.dumps(REGISTER).encode(), decoder=decoder) == [REGISTER]
    assert reasons(decode(b'{"a": "' + b"x" * 1001, decoder=decoder)) == ["message too long (limit 1000 bytes)"]
    assert decode(b"x" * 5000 + b'"}\n' + json.dumps(REGISTER).encode(), decoder=decoder) == [REGISTER]


def test_skipping_garbage_keeps_the_buffer_small():
    decoder = JsonStreamDecoder()
    decode(b"{oops", decoder=decoder)
    for _ in range(100):
        decode(b'x" {[ ]} \\' * 10000, decoder=decoder)
        assert decoder.buffered() <= 2


@pytest.mark.parametrize("data, reason", [
    (b"[1, 2]\n", "not a JSON object"),
    (b"42\n", "not a JSON object"),
    (b'"text"', "not a JSON object"),
    (b"NaN\n", "malformed JSON"),
    (b'{"a": NaN}\n', "malformed JSON"),
    (b'{"a": 01}\n', "malformed JSON"),
    (b'{"a": "tab\there"}\n', "malformed JSON"),
    (b'{"a": "\\u12G4"}\n', "malformed JSON"),
    (b'{"a": 1,}\n', "malformed JSON"),
    (b'{"a": "\xff"}\n', "not UTF-8"),
    (b'{"a": "\\udfff"}\n', "lone surrogate in a string"),
])
def test_what_is_not_a_usable_object(data, reason):
    item, = decode(data)
    assert item.reason.startswith(reason)


def test_surrogate_pairs_and_a_byte_order_mark_are_fine():
    assert decode(b'\xef\xbb\xbf{"a": "\\ud83d\\ude00"}\n') == [{"a": "\U0001f600"}]


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_raw_bytes_start_after_the_line_end_on_a_newline_connection(terminator):
    decoder = JsonStreamDecoder()
    assert decode(b"{}" + terminator, b'{"file_length": 3}' + terminator, decoder=decoder) == [{}, {"file_length": 3}]
    decoder.expect_raw(3)
    assert decode(b"a\nb{}", decoder=decoder) == [RawChunk(b"a\nb", last=True), {}]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID_REQUESTS), mutations, st.integers(1, 7), st.sampled_from([b"", b"\n"]))
def test_after_any_mutation_a_newline_and_a_request_are_decoded_however_split(request, steps, chunk, end):
    data = mutate(request, steps) + b"\n" + json.dumps(REGISTER).encode() + end
    items = decode(*(data[i:i + chunk] for i in range(0, len(data), chunk)))
    assert items[-1] == REGISTER
    assert decode(data) == items  # the fast path decides as the validator does
