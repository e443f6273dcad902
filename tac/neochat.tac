# twistd -ny tac/neochat.tac
# The embedded default: SQLite under ./neochat-data, message server on tcp:7000,
# cell server on UDP 10010.  $NEOCHAT_LISTEN (space separated endpoints),
# $NEOCHAT_CELL (UDP port), $NEOCHAT_DATA and $NEOCHAT_DB override those.
from twisted.application import service

from neochat.config import Settings
from neochat.services.root import build_service

application = service.Application("neochat")
build_service(Settings.from_environment()).setServiceParent(application)
