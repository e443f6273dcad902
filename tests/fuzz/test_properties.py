"""Property tests of the four fuzz targets (``targets.py``): arbitrary bytes,
and streams built to look like what clients send, so the properties are
also checked deep inside valid input.  Every file of the seed corpus
(``corpus/<target>/``) is replayed too."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neochat.wire.headers import encode_message
from tests.fuzz import targets

CORPUS = Path(__file__).parent / "corpus"
PROPERTIES = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])

chunk_size = st.binary(min_size=1, max_size=1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
separators = st.sampled_from([b"", b"\n", b"\r\n", b" ", b"\n\n", b"x", b"]"])


@st.composite
def json_streams(draw):
    """Objects (some of them file offers followed by their raw bytes), junk
    and separators, as clients of seed 000 send them."""
    parts = [draw(chunk_size)]
    for _ in range(draw(st.integers(0, 6))):
        obj = draw(st.dictionaries(st.sampled_from(["message_type", "content", "x", "{"]), json_values, max_size=4))
        if draw(st.booleans()):
            raw = draw(st.binary(max_size=300))
            obj["file_length"] = len(raw)
            parts += [json.dumps(obj).encode(), draw(separators), raw]
        else:
            parts += [json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"),
                      draw(separators)]
    return b"".join(parts)


header_keys = st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True)
header_values = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)


@st.composite
def header_streams(draw):
    parts = [draw(chunk_size)]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            parts.append(draw(st.binary(max_size=200)) + b"\n\n")  # junk
        else:
            headers = draw(st.dictionaries(header_keys.filter(lambda k: k != "content-length"), header_values,
                                           max_size=10))
            parts.append(encode_message(headers, draw(st.binary(max_size=1500))))
    return b"".join(parts)


key_requests = st.dictionaries(
    st.sampled_from(["message_type", "user_account", "friends", "x", "User_Account "]),
    st.text(max_size=30).filter(lambda v: "\n" not in v), max_size=4,
).map(lambda fields: "".join(f"{k}: {v}\n" for k, v in fields.items()).encode("utf-8", "surrogatepass"))


@PROPERTIES
@given(st.binary(max_size=4096) | json_streams())
def test_json_stream_decoder(data):
    targets.json_stream(data)


@PROPERTIES
@given(st.binary(max_size=4096) | header_streams())
def test_header_parser(data):
    targets.headers(data)


@PROPERTIES
@given(st.binary(max_size=2048) | key_requests | st.text(max_size=30).map(lambda key: key.encode() + b":A\nmedia"))
def test_cell_datagram_parser(data):
    targets.cell(data)


@PROPERTIES
@given(st.binary(max_size=600) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_file_name_sanitiser(data):
    targets.file_name(data)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_seed_corpus(path):
    targets.TARGETS[path.parent.name](path.read_bytes())
