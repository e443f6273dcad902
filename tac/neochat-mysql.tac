# NEOCHAT_DB=mysql://user:password@127.0.0.1:3306/neochat twistd -ny tac/neochat-mysql.tac
# MariaDB/MySQL, configured from the environment so that no password shows in
# `ps`: $NEOCHAT_DB (required), $NEOCHAT_CONFIG (a TOML config file),
# $NEOCHAT_LISTEN (default tcp:7000),
# $NEOCHAT_CELL (cell server UDP port, default 10010),
# $NEOCHAT_DATA (default ./neochat-data).
import os

from twisted.application import service
from twisted.logger import ILogObserver

from neochat import logs
from neochat.config import DB_URL_VARIABLE
from neochat.services.root import build_service
from neochat.tap import settings_from_environment

if not os.environ.get(DB_URL_VARIABLE, "").startswith(("mysql://", "mariadb://")):
    raise SystemExit(f"set {DB_URL_VARIABLE}=mysql://user:password@host:port/dbname")

settings = settings_from_environment()
application = service.Application("neochat")
if settings.log_format == "json":
    application.setComponent(ILogObserver, logs.batched("json"))
build_service(settings, owns_process=True).setServiceParent(application)
