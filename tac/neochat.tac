# twistd -ny tac/neochat.tac
# The embedded default: SQLite under ./neochat-data, message server on tcp:7000,
# cell server on UDP 10010.  $NEOCHAT_LISTEN (space separated endpoints),
# $NEOCHAT_CELL (UDP port), $NEOCHAT_DATA and $NEOCHAT_DB override those.
from twisted.application import service

from neochat.services.root import build_service
from neochat.tap import settings_from_environment

application = service.Application("neochat")
build_service(settings_from_environment(), owns_process=True).setServiceParent(application)
