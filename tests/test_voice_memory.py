"""Voice clips to an account that never reads, measured from outside: the
server runs as its own process (``twistd neochat``) and its resident memory
is read from /proc, on SQLite and MariaDB.

The bound, 8 MiB, is half of one clip: a server that held one clip in
memory (as it once did, in the non-reader's transport buffer) crosses it.
What may grow legitimately is less: the sender's decoded body chunks
waiting their turn (at most the dialect's 1 MiB before it stops reading),
the non-reader's write buffer (256 KiB) plus one 64 KiB chunk of its clip,
the kernel's socket buffers (not the process's), and allocator noise.
"""

import socket
import time

from tests.test_voice_clips import logged_in_socket
from tests.test_header_dialect import read_until
from tests.twistd_process import Server
from neochat.wire.headers import encode_head, encode_message

MIB = 1024 * 1024
CLIP = b"\x01" * (16 * MIB)
CLIPS = 40
BOUND = 8 * MIB
SPOOL_PER_SENDER = 64 * MIB  # the default: four clips wait, the rest are refused


def resident_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_clip(sock, buffer, friend):
    """(stat, reason) of one 16 MiB clip from ``sender``."""
    sock.sendall(encode_head({"message_type": "voice", "user_account": "sender", "friends": friend}, len(CLIP)))
    sock.sendall(CLIP)
    reply = read_until(sock, buffer, "message_type: voice\nstat:")
    fields = dict(line.split(": ", 1) for line in reply.strip().splitlines())
    return fields["stat"], fields.get("reason")


def read_clip(sock, buffer):
    head = read_until(sock, buffer, "message_type: voice\nuser_account: sender\n")
    length = int(head.split("content-length: ")[1].split("\n")[0])
    while len(buffer[0]) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "server closed the connection"
        buffer[0] += chunk
    body, buffer[0] = buffer[0][:length], buffer[0][length:]
    return body


def chat(alice, bob, text):
    """alice texts bob; True once alice has the reply and bob the text."""
    alice[0].sendall(encode_message({"message_type": "text", "user_account": "alice", "friends": "bob", "text": text}))
    read_until(*alice, "message_type: text\nstat: 200")
    return f"text: {text}\n" in read_until(*bob, "user_account: alice\nmessage_type: text")


def test_forty_16_mib_clips_to_a_non_reader_grow_the_server_by_less_than_8_mib(tmp_path, db_url):
    # No per-connection rates (the sender is a load generator) and no drop of
    # the non-reader while the test runs: the clips meet the spool's limits.
    server = Server(tmp_path, "--db", db_url, "--limit", "bytes_per_second=0", "--limit", "messages_per_second=0",
                    "--behind-deadline", "600")
    try:
        server.client().close()  # it accepts
        sender, awake, alice, bob = (logged_in_socket(server.port, name) for name in ("sender", "awake", "alice", "bob"))
        for round in range(2):  # warm up: clips to someone who reads them, a refusal, chat
            assert send_clip(*sender, "awake") == ("200", None)
            assert read_clip(*awake) == CLIP
            assert send_clip(*sender, "nobody") == ("480", "friend offline")
            assert all(chat(alice, bob, f"warm {round} {n}") for n in range(20))
        sleepy, _ = logged_in_socket(server.port, "sleepy")  # never reads
        before = resident_bytes(server.process.pid)
        stats = []
        for n in range(CLIPS):
            stats.append(send_clip(*sender, "sleepy"))
            assert chat(alice, bob, f"meanwhile {n}")  # others keep chatting
        grown = resident_bytes(server.process.pid) - before
        waiting = SPOOL_PER_SENDER // len(CLIP)
        assert stats[:waiting] == [("200", None)] * waiting
        assert set(stats[waiting:]) == {("503", "too many of your voice clips waiting for delivery")}
        assert grown < BOUND, f"server grew by {grown / MIB:.1f} MiB"
        assert len(list((server.data_dir / "voice-spool").iterdir())) == waiting
        sleepy.close()
        for _ in range(500):  # the non-reader's clips go with it
            if not list((server.data_dir / "voice-spool").iterdir()):
                break
            time.sleep(0.02)
        assert list((server.data_dir / "voice-spool").iterdir()) == []
        for sock, _ in (sender, awake, alice, bob):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
    finally:
        server.stop()
