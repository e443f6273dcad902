"""Voice calls through the client library: signalling on the message server,
WAV frames as datagrams through the real relay, saved on the other side."""

import wave

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.client_helpers import library_client
from tests.udp import wait_for


@pytest.fixture
def db_url(tmp_path):
    """No storage is exercised here beyond what the library tests cover: SQLite only."""
    return f"sqlite:{tmp_path / 'test.sqlite'}"


def write_wav(path, frames):
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(frames)


def read_wav(path):
    with wave.open(str(path), "rb") as audio:
        return audio.readframes(audio.getnframes())


async def alice_rings_bob(server, **media):
    """Alice and Bob logged in, Alice's call and Bob's side of it, ringing."""
    alice = await library_client(server, "alice")
    bob = await library_client(server, "bob")
    ringing = defer.Deferred()
    bob.calls.on_call = ringing.callback
    call = alice.calls.place("bob", **media)
    return alice, bob, call, await ringing


@pytest_twisted.ensureDeferred
async def test_a_call_carries_wav_frames_both_ways_through_the_relay(server, tmp_path):
    # Half a second of a ramp each way, distinct so that a mix-up shows.
    sounds = {name: bytes(range(start, start + 250)) * 32 for name, start in (("alice", 0), ("bob", 5))}
    for name, frames in sounds.items():
        write_wav(tmp_path / f"{name}.wav", frames)

    alice, bob, call, incoming = await alice_rings_bob(
        server, play=str(tmp_path / "alice.wav"), record=str(tmp_path / "alice-heard.wav"))
    assert (incoming.caller, incoming.callee, incoming.state) == ("alice", "bob", "ringing")
    bob.calls.answer(incoming, play=str(tmp_path / "bob.wav"), record=str(tmp_path / "bob-heard.wav"))
    assert await call.answered
    await wait_for(lambda: call.media.received > 5 and incoming.media.received > 5)
    relay = server.root.cell.counters()
    assert relay["relayed_packets"] >= 10

    ended = incoming.ended
    alice.calls.hang_up(call)
    assert await ended == "closed"
    assert await call.ended == "closed"
    # What arrived is a stretch of what the other side played.
    for listener, speaker in (("alice", "bob"), ("bob", "alice")):
        heard = read_wav(tmp_path / f"{listener}-heard.wav")
        assert heard and heard in sounds[speaker]


@pytest_twisted.ensureDeferred
async def test_a_rejected_call_ends_for_the_caller(server):
    alice, bob, call, incoming = await alice_rings_bob(server)
    bob.calls.reject(incoming)
    assert await call.ended == "rejected"
    assert await call.answered is False
    offline = alice.calls.place("carol")
    assert await offline.ended == "friend offline"


@pytest_twisted.ensureDeferred
async def test_a_dropped_connection_ends_the_call_on_both_sides(server):
    alice, bob, call, incoming = await alice_rings_bob(server)
    bob.calls.answer(incoming)
    assert await call.answered
    bob.connection.transport.abortConnection()
    assert await incoming.ended == "disconnected"
    assert await call.ended == "disconnected"
    assert alice.calls.get("bob") is None and bob.calls.get("alice") is None
