"""The offline side of ``neochatctl``: the same Administration, straight on
the database, with the schema brought up to date first (as the server
does at start), for when no server runs."""

from argon2 import PasswordHasher
from twisted.internet import defer, task

from neochat.admin.operations import Administration, run
from neochat.chat.accounts import Accounts
from neochat.chat.files import FileLibrary
from neochat.store import Database, Store, dialect_from_url
from neochat.store.admin import AdminStore
from neochat.store.schema import upgrade


def open_database(settings, reactor):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(dialect_from_url(settings.database_url(), settings.data_dir), reactor)


@defer.inlineCallbacks
def _run(reactor, settings, verb, arguments, outcome):
    db = open_database(settings, reactor)
    try:
        yield upgrade(db)
        store = Store(db)
        hasher = PasswordHasher(time_cost=settings.hash_time_cost, memory_cost=settings.hash_memory_kib)
        files = FileLibrary(store.files, settings.data_dir / "files", settings.ftp.file_limits(), reactor)
        administration = Administration(store, AdminStore(db), Accounts(store.users, hasher, reactor), files)
        outcome.append((yield run(administration, verb, arguments)))
    except Exception as error:
        outcome.append(error)
    finally:
        db.close()


def run_offline(settings, verb, arguments):
    """The verb's result; raises what it raised (ChatError for refusals)."""
    outcome = []
    try:
        task.react(_run, (settings, verb, arguments, outcome))
    except SystemExit:
        pass  # react always exits; the outcome says how it went
    result = outcome[0]
    if isinstance(result, Exception):
        raise result
    return result
