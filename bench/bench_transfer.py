"""In-band file transfer benchmark: throughput and the server's memory.

Starts `twistd neochat` as a separate process, sends one large file through
the seed-000 in-band transfer (offer + raw bytes), has the receiver accept
it and read it back, and samples the server's resident memory all along.
The file is generated on the fly; nothing is held in the bench's memory.

    python bench/bench_transfer.py [--megabytes 1024]
"""

import argparse
import hashlib
import json
import socket
import time

from server import neochat, rss_sampled  # bench/server.py

CHUNK = 1024 * 1024


class Client:
    def __init__(self, port, name):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buffer = b""
        for kind in ("register", "login"):
            self.send({"message_type": kind, "username": name, "password": "pw"})
            assert self.receive(kind)["content"] == "success"

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def receive(self, message_type):
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["message_type"] == message_type:
                    return message
            self.buffer += self.sock.recv(65536)


def chunks(total):
    """Deterministic bytes, so sender and receiver can hash the same stream."""
    block = hashlib.sha256(b"neochat").digest() * (CHUNK // 32)
    sent = 0
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=1024)
    args = parser.parse_args()
    size = args.megabytes * 1024 * 1024
    limit = str(args.megabytes + 1)
    with neochat("--max-file-size", limit, "--user-quota", limit) as (port, server):
        run(port, server, size)

def run(port, server, size):
    sender, receiver = Client(port, "sender"), Client(port, "receiver")
    with rss_sampled(server) as memory:
        started = time.perf_counter()
        sender.send({"message_type": "file", "send_user": "sender", "rece_user": "receiver",
                     "file_name": "big.bin", "file_length": size})
        for piece in chunks(size):
            sender.sock.sendall(piece)
        offer = receiver.receive("file")
        uploaded = time.perf_counter()
        receiver.send({"message_type": "file", "content": "accept", "file_name": "big.bin",
                       "file_length": size, "send_user": "sender"})
        header = receiver.receive("file-data")
        digest = hashlib.sha256(receiver.buffer)
        left = header["file_length"] - len(receiver.buffer)
        while left:
            data = receiver.sock.recv(min(left, 1 << 20))
            digest.update(data)
            left -= len(data)
        finished = time.perf_counter()
    baseline, peak = memory["before"], memory["peak"]
    expected = hashlib.sha256()
    for piece in chunks(size):
        expected.update(piece)
    assert offer["file_length"] == size and digest.hexdigest() == expected.hexdigest()
    mib = size / 2**20
    print(f"file                     {mib:.0f} MiB, sha256 verified")
    print(f"upload (sender->server)  {mib / (uploaded - started):.0f} MiB/s")
    print(f"download (server->rcvr)  {mib / (finished - uploaded):.0f} MiB/s")
    print(f"server RSS before        {baseline / 2**20:.1f} MiB")
    print(f"server RSS peak          {peak / 2**20:.1f} MiB (+{(peak - baseline) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
