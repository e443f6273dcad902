"""JSON stream decoder benchmark: requests decoded per second, against
``json.loads`` on the same objects with their boundaries given (the
reference: what parsing alone costs).

Three streams of seed-000 ``word`` requests fed in 64 KiB chunks: one object
per line, objects back to back, and one line per request with every tenth
line broken (the decoder answers it and resynchronises).

    python bench/bench_json_decoder.py [--requests 50000]
"""

import argparse
import json
import time

from neochat.wire.json_stream import JsonStreamDecoder

CHUNK = 64 * 1024


def request(n):
    return json.dumps({"message_type": "word", "chat_type": "private", "send_user": "alice",
                       "rece_user": "bob", "content": f"message {n}: 你好, how are you today?"}).encode()


def decode_rate(data):
    decoder = JsonStreamDecoder()
    items = 0
    start = time.perf_counter()
    for offset in range(0, len(data), CHUNK):
        decoder.feed(data[offset:offset + CHUNK])
        while decoder.next_item() is not None:
            items += 1
    return items, items / (time.perf_counter() - start)


def reference_rate(objects):
    start = time.perf_counter()
    for text in objects:
        json.loads(text)
    return len(objects) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50000)
    count = parser.parse_args().requests
    objects = [request(n) for n in range(count)]
    broken = [text[:-9] if n % 10 == 9 else text for n, text in enumerate(objects)]
    reference = reference_rate(objects)
    print(f"reference json.loads: {reference:,.0f} objects/s")
    for name, data in (
        ("one per line", b"\n".join(objects) + b"\n"),
        ("back to back", b"".join(objects)),
        ("every tenth broken", b"\n".join(broken) + b"\n"),
    ):
        items, rate = decode_rate(data)
        print(f"{name:>20}: {items:,} items, {rate:,.0f} items/s, ratio {rate / reference:.2f}")


if __name__ == "__main__":
    main()
