"""Seed-000 voice calls for the client library, with WAV files as the sound.

Signalling is the JSON dialect's ``voice`` messages (docs/protocol.md, "Seed
000: voice").  Once a call is accepted each party binds its ``your_port``
(any free port if that is taken: the relay latches onto the source of the
first datagram), sends raw datagrams to ``other_ip:other_port`` and receives
on its port.  Instead of a sound card, ``VoiceMedia`` streams a WAV file's
frames (20 ms per datagram) and saves what arrives to a WAV file, so calls
can be held and tested on a machine without audio.
"""

import wave

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

MAX_DATAGRAM = 1400  # the relay's audio limit, whole datagram
PACKETS_PER_SECOND = 50  # 20 ms frames
RECORD_FORMAT = (1, 2, 8000)  # channels, bytes per sample, rate when nothing is played


class VoiceMedia(DatagramProtocol):
    """Plays ``play`` (a WAV path or None) to ``remote`` and records what
    arrives to ``record`` (a WAV path or None)."""

    def __init__(self, reactor, remote, play=None, record=None):
        self.reactor = reactor
        self.remote = remote
        self.sent = self.received = 0  # datagrams
        self._source = wave.open(play, "rb") if play else None
        channels, width, rate = (
            (self._source.getnchannels(), self._source.getsampwidth(), self._source.getframerate())
            if self._source else RECORD_FORMAT
        )
        self._frames = max(1, min(rate // PACKETS_PER_SECOND, MAX_DATAGRAM // (channels * width)))
        self._interval = self._frames / rate
        self._sink = None
        if record:
            self._sink = wave.open(record, "wb")
            self._sink.setnchannels(channels)
            self._sink.setsampwidth(width)
            self._sink.setframerate(rate)
        self._pump = task.LoopingCall(self._send_frame)
        self._pump.clock = reactor

    def startProtocol(self):
        if self._source is not None:
            self._pump.start(self._interval)
        else:
            self.transport.write(b"", self.remote)  # latch our address at the relay

    def _send_frame(self):
        data = self._source.readframes(self._frames)
        if not data:
            self._pump.stop()
            return
        self.transport.write(data, self.remote)
        self.sent += 1

    def datagramReceived(self, data, source):
        if source != self.remote or not data:
            return
        self.received += 1
        if self._sink is not None:
            self._sink.writeframes(data)

    def close(self):
        if self._pump.running:
            self._pump.stop()
        for audio in (self._source, self._sink):
            if audio is not None:
                audio.close()
        self._source = self._sink = None
        return self.transport.stopListening() if self.transport else defer.succeed(None)


class Call:
    """One voice call; ``ended`` fires with the reason when it is over."""

    def __init__(self, caller, callee, incoming, play=None, record=None):
        self.caller, self.callee, self.incoming = caller, callee, incoming
        self.play, self.record = play, record  # WAV paths of an outgoing call
        self.state = "ringing"
        self.fields = {}  # other_ip, other_port, your_ip, your_port
        self.media = None
        self.answered = defer.Deferred()  # True once media flows, False if it ended first
        self.ended = defer.Deferred()

    @property
    def peer(self):
        return self.caller if self.incoming else self.callee


class Calls:
    """The voice calls of one ``NeoChatClient``; ``on_call(call)`` is told of
    incoming calls."""

    def __init__(self, client):
        self.client = client
        self.reactor = client.reactor
        self.on_call = None
        self._calls = {}  # peer -> Call
        client.subscribe(self._pushed)

    def get(self, peer):
        return self._calls.get(peer)

    def place(self, callee, play=None, record=None):
        """Ring ``callee``; the call's ``answered`` fires (True) when they
        accept and media starts, ``ended`` with the reason when it is over."""
        if callee in self._calls:
            raise ValueError(f"already in a call with {callee}")
        call = Call(self.client.account, callee, incoming=False, play=play, record=record)
        self._calls[callee] = call
        if not self._send(call, "request"):
            self._end(call, "not connected")
        return call

    def answer(self, call, play=None, record=None):
        self._send(call, "accept")
        self._start_media(call, play, record)

    def reject(self, call):
        self._send(call, "reject")
        self._end(call, "rejected")

    def hang_up(self, call):
        self._send(call, "close")
        self._end(call, "closed")

    def _send(self, call, content):
        """False if not logged in; the server ends our calls when the
        connection drops, so nothing waits for the next one."""
        connection = self.client.connection
        if connection is None:
            return False
        connection.send({"message_type": "voice", "content": content,
                         "send_user": call.caller, "rece_user": call.callee})
        return True

    def end_all(self, reason):
        """The connection dropped: the server has ended every call."""
        for call in list(self._calls.values()):
            self._end(call, reason)

    def _pushed(self, message):
        if message.get("message_type") != "voice":
            return
        content = message.get("content")
        if content == "request":
            call = Call(message["send_user"], message["rece_user"], incoming=True)
            call.fields = message
            previous = self._calls.pop(call.peer, None)
            if previous is not None:
                self._end(previous, "replaced")
            self._calls[call.peer] = call
            if self.on_call is not None:
                self.on_call(call)
            return
        if content == "fail":
            # Only a request has failures that leave no call behind (friend
            # offline, busy, ...): they end our newest call still ringing out.
            ringing = [call for call in self._calls.values() if not call.incoming and call.state == "ringing"]
            if ringing:
                self._end(ringing[-1], message.get("reason", "failed"))
            return
        # A close without names ends our newest call, as the server does.
        call = self._calls.get(message.get("rece_user")) or next(reversed(self._calls.values()), None)
        if call is None:
            return
        if content == "accept" and not call.incoming:
            call.fields = message
            self._start_media(call, call.play, call.record)
        elif content == "reject":
            self._end(call, "rejected")
        elif content == "close":
            self._end(call, message.get("reason", "closed"))

    def _start_media(self, call, play, record):
        fields = call.fields
        remote = (fields["other_ip"], fields["other_port"])
        media = VoiceMedia(self.reactor, remote, play, record)
        try:
            self.reactor.listenUDP(fields["your_port"], media)
        except CannotListenError:
            self.reactor.listenUDP(0, media)
        call.media = media
        call.state = "active"
        call.answered.callback(True)

    def _end(self, call, reason):
        if self._calls.get(call.peer) is call:
            del self._calls[call.peer]
        if call.state == "ended":
            return
        call.state = "ended"
        done = call.media.close() if call.media is not None else defer.succeed(None)
        if not call.answered.called:
            call.answered.callback(False)
        done.addCallback(lambda _: call.ended.callback(reason))
