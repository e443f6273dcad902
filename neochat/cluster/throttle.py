"""Failed logins and registrations counted in Redis, for the whole cluster:
the interface of neochat/chat/throttle.py's Throttle, with Deferreds that
the Accounts wait on.  A guesser who spreads attempts over the nodes is
throttled as on one node.

Keys, under the cluster prefix and ``throttle:``, each expiring by itself:

- ``failures:account:NAME``, ``failures:address:IP``: failed logins,
  forgotten two lockout periods after the last;
- ``wait:account:NAME``, ``wait:address:IP``: there while the next attempt
  must wait, for as long as it must (its TTL);
- ``registrations:IP``: registrations in the window opened by the first.

A failure is counted by one Lua script (so nodes counting at once count
right); the wait the new count calls for (FailurePolicy.delay, the one
place that knows it) is then set, only ever made longer, so the order in
which two nodes set theirs does not matter.  Redis's clock alone decides
when a wait is over.

While Redis is disconnected, or does not answer within ``shared_timeout``,
or has ``shared_waiting`` commands unanswered, the node counts alone, in a
Throttle of its own (only then: a good login on another node could not
clear it): logins go on, and a guesser gets at most the number of nodes
times one node's budget until Redis answers again (logged once each way).
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from neochat.chat.throttle import TooManyAttempts

log = Logger()

# KEYS: failures.  ARGV: their lifetime (ms).  The count.
FAIL = """
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return failures
"""

# KEYS: wait.  ARGV: milliseconds, unless it is longer already.
WAIT = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
"""

# KEYS: the two waits.  Milliseconds left of each (negative: none).
WAITS = "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}"

# KEYS: registrations.  ARGV: the limit, the window (ms).  0 when counted,
# else the milliseconds until the window is over.
REGISTER = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return math.max(1, redis.call('PTTL', KEYS[1]))
end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisAway(Exception):
    """Redis is disconnected, slow, or too far behind: count on this node."""


def _ms(seconds):
    """Whole milliseconds, at least 1 (Redis refuses a PX of 0)."""
    return str(max(1, int(seconds * 1000)))


class ClusterThrottle:
    """``local``: this node's Throttle (the settings, and the counts while
    Redis is away); ``router``: the ClusterRouter whose Redis connection counts."""

    def __init__(self, local, router, reactor):
        self.local = local
        self.settings = local.settings
        self.router = router
        self.reactor = reactor
        self.shared = True  # Redis answered last time
        self._waiting = 0  # commands sent and not answered

    @defer.inlineCallbacks
    def check_login(self, account, address):
        """Raise TooManyAttempts while the account or the address must wait."""
        waits = yield self._shared("EVAL", WAITS, "2", self._key("wait", "account", account),
                                   self._key("wait", "address", address))
        if waits is None:
            self.local.check_login(account, address)
        elif max(waits) > 0:
            raise TooManyAttempts(max(waits) / 1000)

    @defer.inlineCallbacks
    def login_failed(self, account, address, via):
        keys = (("account", account, self.local.accounts), ("address", address, self.local.addresses))
        shared = yield defer.gatherResults([
            self._shared("EVAL", FAIL, "1", self._key("failures", what, key), _ms(2 * counter.policy.lock_seconds))
            for what, key, counter in keys])
        now = self.reactor.seconds()
        counts, waits = [], []
        for count, (what, key, counter) in zip(shared, keys):
            if count is None:  # Redis is away: this node counts
                count = counter.fail(key, now)
            elif (delay := counter.policy.delay(count)) > 0:
                waits.append(self._shared("EVAL", WAIT, "1", self._key("wait", what, key), _ms(delay)))
            counts.append(count)
        yield defer.gatherResults(waits)
        self.local.report_failure(account, address, via, *counts)

    def login_succeeded(self, account):
        self.local.login_succeeded(account)
        return self._shared("DEL", self._key("failures", "account", account), self._key("wait", "account", account))

    @defer.inlineCallbacks
    def register(self, address):
        """Count one registration from ``address``; raise TooManyAttempts past the limit."""
        if not self.settings.registrations_per_address:
            return  # 0: no limit
        wait = yield self._shared("EVAL", REGISTER, "1", self._key("registrations", address),
                                  str(self.settings.registrations_per_address),
                                  _ms(self.settings.registration_window))
        if wait is None:
            self.local.register(address)
        elif wait:
            raise TooManyAttempts(wait / 1000)

    def _key(self, *parts):
        return self.router.prefix + "throttle:" + ":".join(map(str, parts))

    def _shared(self, *command):
        """Deferred: Redis's answer, or None when Redis is away."""
        return self._run(*command).addCallbacks(self._answered, self._unanswered)

    def _run(self, *command):
        """The command's answer, or RedisAway at once or after ``shared_timeout``.
        A command that times out is not cancelled (its reply would go to the
        next one): it stays counted in ``_waiting`` until Redis answers it."""
        redis = self.router.redis
        if redis is None or not redis.connected():
            return defer.fail(RedisAway("not connected"))
        if self._waiting >= self.settings.shared_waiting:
            return defer.fail(RedisAway(f"{self._waiting} commands unanswered"))
        self._waiting += 1
        answer = defer.Deferred()
        timer = self.reactor.callLater(self.settings.shared_timeout, answer.errback,
                                       RedisAway(f"no answer in {self.settings.shared_timeout:g} s"))

        def settled(result):
            self._waiting -= 1
            if not answer.called:
                timer.cancel()
                (answer.errback if isinstance(result, Failure) else answer.callback)(result)

        redis.commands.execute_command(*command).addBoth(settled)
        return answer

    def _answered(self, result):
        if not self.shared:
            self.shared = True
            log.info("Redis answers again: login and registration limits are cluster-wide again")
        return result

    def _unanswered(self, failure):
        if self.shared:
            self.shared = False
            log.warn("Redis is away ({reason}): login and registration limits are counted on this node"
                     " alone until it answers", reason=failure.getErrorMessage())
        return None
