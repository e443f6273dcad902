import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neochat.wire.headers import (
    BAD_LINE, BodyChunk, BodyEnd, BodyStart, HeaderDecoder, HeaderError, HeaderMessage, encode_message,
)

SEED_LOGIN = (
    b"message_type: login\n"
    b"type: POST\n"
    b"user_account: +8611011\n"
    b"user_password: asdf\n"
    b"\n"
)
LOGIN_HEADERS = {
    "message_type": "login",
    "type": "POST",
    "user_account": "+8611011",
    "user_password": "asdf",
}
NEXT = b"message_type: text\n\n"
NEXT_MESSAGE = HeaderMessage({"message_type": "text"})
BODY_WITH_BLANK_LINES = b"line one\n\nline three\r\n\r\n\x00\xff\n\n"


def decode(data: bytes, **limits) -> list:
    return HeaderDecoder(**limits).feed(data)


def decode_in_chunks(chunks, **limits) -> list:
    decoder = HeaderDecoder(**limits)
    return [item for chunk in chunks for item in decoder.feed(chunk)]


def test_seed_login_message_parses():
    [message] = decode(SEED_LOGIN)
    assert message == HeaderMessage(LOGIN_HEADERS)
    assert list(message.headers) == list(LOGIN_HEADERS)


def test_seed_text_message_with_utf8_value_parses():
    data = "message_type: text\ntext: 你好 <file>%2B86101_10012312312311_a.png</file>\n\n"
    [message] = decode(data.encode())
    assert message.headers["text"] == "你好 <file>%2B86101_10012312312311_a.png</file>"


@pytest.mark.parametrize("data", [SEED_LOGIN, b"a: 1\ncontent-length: 9\n\nbody\n\nend\n" + NEXT])
def test_message_split_at_every_byte_boundary_parses_the_same(data):
    whole = decode(data)
    for cut in range(len(data) + 1):
        assert decode_in_chunks([data[:cut], data[cut:]]) == whole
    assert decode_in_chunks([data[i:i + 1] for i in range(len(data))]) == whole


def test_several_messages_in_one_chunk():
    assert decode(SEED_LOGIN + NEXT + SEED_LOGIN) == [
        HeaderMessage(LOGIN_HEADERS), NEXT_MESSAGE, HeaderMessage(LOGIN_HEADERS)]


def test_crlf_line_endings_are_accepted():
    assert decode(SEED_LOGIN.replace(b"\n", b"\r\n")) == [HeaderMessage(LOGIN_HEADERS)]


def test_blank_lines_between_messages_are_ignored():
    assert decode(b"\n\r\n" + NEXT + b"\n\n" + NEXT) == [NEXT_MESSAGE, NEXT_MESSAGE]


def test_key_without_space_is_accepted_and_value_whitespace_is_stripped():
    [message] = decode(b"message_type:text\nfile: \t%2B86101_a.png \nempty:\n\n")
    assert message.headers == {"message_type": "text", "file": "%2B86101_a.png", "empty": ""}


def test_keys_are_case_insensitive_and_decoded_lowercase():
    [message] = decode(b"Message_Type: login\nCONTENT-LENGTH: 2\n\nhi")
    assert message == HeaderMessage({"message_type": "login"}, b"hi")


def test_content_length_body_may_hold_binary_and_blank_lines():
    data = b"message_type: text\ncontent-length: %d\n\n" % len(BODY_WITH_BLANK_LINES)
    assert decode(data + BODY_WITH_BLANK_LINES + NEXT) == [
        HeaderMessage({"message_type": "text"}, BODY_WITH_BLANK_LINES), NEXT_MESSAGE]


@pytest.mark.parametrize("after_body", [b"", b"\n", b"\r\n"])
def test_optional_newline_after_body_is_skipped(after_body):
    data = b"content-length: 3\n\nabc" + after_body + NEXT
    assert decode(data) == [HeaderMessage({}, b"abc"), NEXT_MESSAGE]


def test_content_length_zero_means_empty_body():
    assert decode(b"message_type: text\ncontent-length: 0\n\n" + NEXT) == [
        NEXT_MESSAGE, NEXT_MESSAGE]


def test_large_body_fed_in_small_chunks_is_reassembled():
    body = bytes(range(256)) * 16384  # 4 MiB
    data = encode_message({"message_type": "voice"}, body) + NEXT
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert decode_in_chunks(chunks) == [
        HeaderMessage({"message_type": "voice"}, body), NEXT_MESSAGE]


@pytest.mark.parametrize(
    "value", [b"abc", b"-1", b"+5", b"1.0", b"0x10", b"", "٣".encode(), b"1" * 19])
def test_bad_content_length_is_400_and_the_next_message_still_parses(value):
    data = b"message_type: text\ncontent-length: " + value + b"\n\n" + NEXT
    assert decode(data) == [HeaderError(400, "bad content-length", "text"), NEXT_MESSAGE]


def test_body_over_max_body_is_413_and_the_body_is_skipped():
    body = b"\n\nnot: a message"
    data = b"message_type: voice\ncontent-length: %d\n\n" % len(body) + body + NEXT
    chunks = [data[i:i + 3] for i in range(0, len(data), 3)]
    assert decode_in_chunks(chunks, max_body=10) == [
        HeaderError(413, "body too large", "voice"), NEXT_MESSAGE]


@pytest.mark.parametrize("chunk_size", [1, 7, 100000])
def test_over_long_line_is_431_and_the_next_message_still_parses(chunk_size):
    data = b"message_type: text\ntext: " + b"x" * 100 + b"\nmore: 1\n\n" + NEXT
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    assert decode_in_chunks(chunks, max_line=50) == [
        HeaderError(431, "header line too long", "text"), NEXT_MESSAGE]


def test_line_of_exactly_max_line_bytes_is_accepted_with_crlf():
    data = b"k: " + b"v" * 7 + b"\r\n\r\n"
    chunks = [data[i:i + 1] for i in range(len(data))]
    assert decode_in_chunks(chunks, max_line=10) == [HeaderMessage({"k": "v" * 7})]


def test_over_long_line_without_newline_keeps_the_buffer_small():
    decoder = HeaderDecoder(max_line=100)
    for _ in range(1000):
        assert decoder.feed(b"y" * 1000) == []
        assert len(decoder._buffer) <= 101
    assert decoder.feed(b"\n\n" + NEXT) == [HeaderError(431, "header line too long"), NEXT_MESSAGE]


def test_too_many_headers_is_431():
    data = b"".join(b"h%d: v\n" % i for i in range(5)) + b"\n" + NEXT
    assert decode(data, max_headers=4) == [HeaderError(431, "too many headers"), NEXT_MESSAGE]


@pytest.mark.parametrize(
    "line", [b"no colon here", b"bad key: v", b": v", b"k\xc3\xa9y: v", b"a: b\rc"])
def test_bad_header_line_is_400_and_the_next_message_still_parses(line):
    data = b"message_type: login\n" + line + b"\nuser: a\n\n" + NEXT
    assert decode(data) == [HeaderError(400, BAD_LINE, "login"), NEXT_MESSAGE]


def test_duplicate_key_is_400():
    data = b"message_type: login\nuser: a\nuser: b\n\n"
    assert decode(data) == [HeaderError(400, "duplicate header", "login")]


def test_a_repeatable_key_may_come_again_and_its_values_are_joined():
    data = b"message_type: text\nfriends: a\nfriends: b c\nuser: x\nuser: y\n\n" + NEXT
    assert HeaderDecoder(repeatable=frozenset({"friends"})).feed(data) == [
        HeaderError(400, "duplicate header", "text"), NEXT_MESSAGE]
    assert HeaderDecoder(repeatable=frozenset({"friends"})).feed(data.replace(b"user: y\n", b"")) == [
        HeaderMessage({"message_type": "text", "friends": "a b c", "user": "x"}), NEXT_MESSAGE]


def test_a_repeated_key_counts_towards_max_headers():
    data = b"friends: a\n" * 5 + b"\n"
    assert HeaderDecoder(max_headers=4, repeatable=frozenset({"friends"})).feed(data) == [
        HeaderError(431, "too many headers")]


def test_the_end_of_the_stream_ends_a_last_message_without_its_blank_line():
    decoder = HeaderDecoder()
    assert decoder.feed(b"message_type: login\r\nuser_account: a") == []
    assert decoder.feed_eof() == [HeaderMessage({"message_type": "login", "user_account": "a"})]


def test_a_space_before_the_colon_is_accepted():
    assert decode(b"user_account : +86101\nmessage_type\t:text\n\n") == [
        HeaderMessage({"user_account": "+86101", "message_type": "text"})]


def upload(headers):
    return "task_id" in headers


def test_a_streamed_body_without_length_runs_to_the_end_of_the_stream():
    decoder = HeaderDecoder(streamed=upload)
    assert decoder.feed(b"task_id: 1\n\n0x00\n") == [BodyStart({"task_id": "1"}, None), BodyChunk(b"0x00\n")]
    assert decoder.in_body
    assert decoder.feed(b"message_type: text\n\n") == [BodyChunk(b"message_type: text\n\n")]
    assert decoder.feed_eof() == [BodyEnd(True)]


def test_a_streamed_body_with_length_ends_there_and_the_next_message_follows():
    decoder = HeaderDecoder(streamed=upload, max_body=2)
    data = b"task_id: 1\ncontent-length: 5\n\nab" + b"cde" + NEXT
    assert decoder.feed(data[:-len(NEXT) - 3]) == [BodyStart({"task_id": "1"}, 5), BodyChunk(b"ab")]
    assert decoder.feed(data[-len(NEXT) - 3:]) == [BodyChunk(b"cde"), BodyEnd(True), NEXT_MESSAGE]
    assert decoder.feed(b"task_id: 2\ncontent-length: 0\n\n") == [BodyStart({"task_id": "2"}, 0), BodyEnd(True)]


def test_a_streamed_body_is_held_to_its_limit_before_it_starts():
    voice = lambda headers: headers.get("message_type") == "voice"  # noqa: E731
    decoder = HeaderDecoder(streamed=voice, body_limit=lambda headers: 4 if voice(headers) else None)
    assert decoder.feed(b"message_type: voice\ncontent-length: 5\n\nabcde" + NEXT) == [
        HeaderError(413, "body too large", "voice"), NEXT_MESSAGE]
    assert decoder.feed(b"message_type: voice\ncontent-length: 4\n\nabcd") == [
        BodyStart({"message_type": "voice"}, 4), BodyChunk(b"abcd"), BodyEnd(True)]


@pytest.mark.parametrize("length", [b"", b"content-length: 9\n"])
def test_cut_ends_a_streamed_body_as_incomplete_and_reads_on(length):
    decoder = HeaderDecoder(streamed=upload)
    assert decoder.feed(b"task_id: 1\n" + length + b"\nabc")[-1] == BodyChunk(b"abc")
    assert decoder.cut() == [BodyEnd(False)]
    assert decoder.feed(NEXT) == [NEXT_MESSAGE]


def test_cut_or_the_end_of_the_stream_refuses_a_body_held_whole():
    decoder = HeaderDecoder()
    assert decoder.feed(b"message_type: text\ncontent-length: 9\n\nabc") == []
    assert decoder.cut() == [HeaderError(400, "body incomplete: 3 of 9 bytes came", "text")]
    assert decoder.feed(NEXT) == [NEXT_MESSAGE]
    decoder.feed(b"message_type: text\ncontent-length: 9\n\nab")
    assert decoder.feed_eof() == [HeaderError(400, "body incomplete: 2 of 9 bytes came", "text")]


def test_invalid_utf8_is_400_and_the_next_message_still_parses():
    data = b"message_type: text\ntext: \xff\xfe\n\n" + NEXT
    assert decode(data) == [HeaderError(400, "invalid utf-8", "text"), NEXT_MESSAGE]


def test_error_has_no_message_type_when_it_is_unknown():
    assert decode(b"garbage\n\n") == [HeaderError(400, BAD_LINE, None)]


def test_broken_message_with_a_body_skips_its_body():
    data = b"message_type: text\nbad line\ncontent-length: 6\n\nx: y\n\n" + NEXT
    assert decode(data) == [HeaderError(400, BAD_LINE, "text"), NEXT_MESSAGE]


def test_first_error_of_a_message_is_reported():
    data = b"bad line\nx: \xff\n\n"
    assert decode(data) == [HeaderError(400, BAD_LINE)]


def test_encode_writes_lines_then_blank_line_then_body():
    assert encode_message({"message_type": "login", "stat": "200"}) == (
        b"message_type: login\nstat: 200\n\n")
    assert encode_message({"message_type": "text"}, b"a\n\nb") == (
        b"message_type: text\ncontent-length: 4\n\na\n\nb")


@pytest.mark.parametrize("headers", [
    {"text": "two\nlines"}, {"text": "cr\r"}, {"bad key": "v"}, {"Key": "v"}, {"": "v"},
    {"content-length": "3"}, {"a:b": "v"},
])
def test_encode_rejects_line_breaks_bad_keys_and_explicit_content_length(headers):
    with pytest.raises(ValueError):
        encode_message(headers)


def test_encode_decode_round_trip():
    headers = {"user_account": "+86101", "message_type": "text", "text": "你好 <file>a.png</file>"}
    data = encode_message(headers, BODY_WITH_BLANK_LINES) + encode_message(LOGIN_HEADERS)
    assert decode(data) == [
        HeaderMessage(headers, BODY_WITH_BLANK_LINES), HeaderMessage(LOGIN_HEADERS)]


# Property tests, with small limits so that they are reached often.
LIMITS = {"max_line": 64, "max_headers": 4, "max_body": 256}
TOKENS = [b"\n", b"\r\n", b"\r", b":", b": ", b"message_type: text\n", b"content-length: 3\n",
          b"content-length: 300\n", b"content-length: x\n", b"\xff", b"k" * 70]

keys = st.from_regex(r"[a-z0-9_-]{1,10}", fullmatch=True).filter(lambda k: k != "content-length")
values = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=10).map(
    lambda value: value.strip(" \t"))
messages = st.tuples(
    st.dictionaries(keys, values, max_size=LIMITS["max_headers"] - 1),
    st.binary(max_size=LIMITS["max_body"]),
).filter(lambda message: message[0] or message[1])


def split_randomly(data: bytes, draw) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    return [data[start:end] for start, end in zip([0] + cuts, cuts + [len(data)])]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=100) | st.sampled_from(TOKENS), max_size=40), st.data())
def test_arbitrary_bytes_never_raise_and_keep_memory_bounded(pieces, data):
    decoder = HeaderDecoder(**LIMITS)
    for chunk in split_randomly(b"".join(pieces), data.draw):
        for item in decoder.feed(chunk):
            assert isinstance(item, (HeaderMessage, HeaderError))
        assert len(decoder._buffer) <= LIMITS["max_line"] + LIMITS["max_body"] + 2
        assert len(decoder._headers) <= LIMITS["max_headers"]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=60) | st.sampled_from(TOKENS), max_size=30))
def test_every_decoded_message_encodes_back_to_itself(pieces):
    for item in decode(b"".join(pieces), **LIMITS):
        if isinstance(item, HeaderMessage) and (item.headers or item.body):
            assert decode(encode_message(item.headers, item.body), **LIMITS) == [item]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(messages, st.sampled_from([b"", b"\n", b"\r\n"])), max_size=8),
       st.data())
def test_encoded_messages_decode_back_in_any_chunking(sent, data):
    stream = b"".join(encode_message(headers, body) + gap for (headers, body), gap in sent)
    received = decode_in_chunks(split_randomly(stream, data.draw), **LIMITS)
    assert [(list(m.headers.items()), m.body) for m in received] == [
        (list(headers.items()), body) for (headers, body), _ in sent]
