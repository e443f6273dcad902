# twistd -ny tac/neochat.tac
# The embedded default: SQLite under ./neochat-data, message server on tcp:7000,
# cell server on UDP 10010.  $NEOCHAT_CONFIG (a TOML config file), $NEOCHAT_LISTEN (endpoints),
# $NEOCHAT_CELL (UDP port), $NEOCHAT_DATA and $NEOCHAT_DB override those.
from twisted.application import service
from twisted.logger import ILogObserver

from neochat import logs
from neochat.services.root import build_service
from neochat.tap import settings_from_environment

settings = settings_from_environment()
application = service.Application("neochat")
if settings.log_format == "json":
    application.setComponent(ILogObserver, logs.batched("json"))
build_service(settings, owns_process=True).setServiceParent(application)
