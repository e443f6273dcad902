"""Seed-002 upload exchange benchmark: throughput and the server's memory.

Starts `twistd neochat` as a separate process and uploads one large file on
the message server three ways in the same run: as seed 002 writes it (no
length, the end marked by a half-close), with `content-length`, and, as the
reference, through the seed-000 in-band transfer (bench_transfer.py's upload
half).  It samples the server's resident memory all along.

    python bench/bench_header_upload.py [--megabytes 512]
"""

import argparse
import socket
import time

from bench_transfer import Client, chunks  # bench/bench_transfer.py
from server import neochat, rss_sampled  # bench/server.py


def header_connection(port, account):
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    for kind in ("registered", "login"):
        sock.sendall(f"message_type: {kind}\nuser_account: {account}\nuser_password: pw\n\n".encode())
    return sock


def read_until(sock, marker):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}; got {data!r}"
        data += chunk
    return data


def upload_without_length(port, size):
    sock = header_connection(port, "unsized")
    read_until(sock, b"message_type: login\nstat: 200\n")
    sock.sendall(b"task_id: 1\nuser_account: unsized\ntime: 1\n\n")
    for piece in chunks(size):
        sock.sendall(piece)
    sock.shutdown(socket.SHUT_WR)
    reply = read_until(sock, b"task_id: 1\nstat: 200\n")
    sock.close()
    return reply


def upload_with_length(port, size):
    sock = header_connection(port, "sized")
    read_until(sock, b"message_type: login\nstat: 200\n")
    sock.sendall(b"task_id: 2\nuser_account: sized\ntime: 1\ncontent-length: %d\n\n" % size)
    for piece in chunks(size):
        sock.sendall(piece)
    reply = read_until(sock, b"task_id: 2\nstat: 200\n")
    sock.close()
    return reply


def in_band_offer(port, size):
    sender, receiver = Client(port, "sender"), Client(port, "receiver")
    sender.send({"message_type": "file", "send_user": "sender", "rece_user": "receiver",
                 "file_name": "big.bin", "file_length": size})
    for piece in chunks(size):
        sender.sock.sendall(piece)
    return receiver.receive("file")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    size = args.megabytes * 1024 * 1024
    limit = str(args.megabytes + 1)
    with neochat("--max-file-size", limit, "--user-quota", limit) as (port, server):
        rates = {}
        with rss_sampled(server) as memory:
            for name, upload in (("seed 002, no length, half-close", upload_without_length),
                                 ("seed 002, content-length", upload_with_length),
                                 ("seed 000 in-band (reference)", in_band_offer)):
                started = time.perf_counter()
                upload(port, size)
                rates[name] = size / 2**20 / (time.perf_counter() - started)
    reference = rates["seed 000 in-band (reference)"]
    print(f"file                              {size / 2**20:.0f} MiB")
    for name, rate in rates.items():
        print(f"{name:33} {rate:.0f} MiB/s  (x{rate / reference:.2f} of the reference)")
    before, peak = memory["before"], memory["peak"]
    print(f"server RSS before                 {before / 2**20:.1f} MiB")
    print(f"server RSS peak                   {peak / 2**20:.1f} MiB (+{(peak - before) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
