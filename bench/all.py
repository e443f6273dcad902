"""Every comparison in one run: each workload against NeoChat (SQLite, and
MariaDB when the server answers), against the reference written for it in
bench/, and against Prosody, ejabberd and coturn where they are installed
(``apt-get install prosody ejabberd coturn``; never their system services:
each runs from a throwaway directory on free loopback ports).  Prints each
result as it comes, then a markdown table with the ratios NeoChat / other
and the machine it ran on.  A script, not a test.

    python -m bench.all [--only chat relay ftp] [--pairs 10 100] [--seconds 5]
                        [--rate 2000] [--idle 1000] [--mariadb URL] [--repeat N] [--markdown FILE]

Workloads (one pass of the defaults takes about five minutes on 2 busy cores):

- chat (bench/bench_chat.py): pairs flat out, a steady rate, idle logins;
  against the bare line router (bench/reference_router.py), Prosody and
  ejabberd (bench/xmpp.py).  Server on core 0, load generator on core 1.
- relay (bench/bench_cell.py): the call sweep (the largest number of calls
  held with < 1 % loss and p99 < 20 ms) and one call flat out; against the
  bare Twisted relay (bench/reference_relay.py) and coturn (bench/turn.py).
  Relay on core 0, load generator on core 1.
- ftp (bench/bench_ftp.py): one big file up and down, small files, concurrent
  clients; against a bare pyftpdlib server.  Not pinned, as bench_ftp.py runs it.
"""

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import bench_cell, bench_chat, bench_ftp, turn, xmpp  # noqa: E402
from bench.bench_chat import BENCH_CPU, SERVER_CPU  # noqa: E402
from bench.server import neochat, reference  # noqa: E402

NEOCHAT, MARIADB, REFERENCE = "NeoChat SQLite", "NeoChat MariaDB", "bench/ reference"
TEST_MARIADB = "mysql://neochat_test:neochat_test@127.0.0.1:3306/"  # what scripts/test sets up


def chat(args, mariadb):
    servers = {NEOCHAT: lambda: neochat(cpu=SERVER_CPU)}
    if mariadb:
        servers[MARIADB] = lambda: neochat("--db", mariadb, cpu=SERVER_CPU)
    servers[REFERENCE] = lambda: reference(cpu=SERVER_CPU)
    dialects = dict.fromkeys(servers, bench_chat.SEED)
    for name, server in xmpp.installed().items():
        servers[name] = lambda server=server: server(cpu=SERVER_CPU)
        dialects[name] = xmpp.XMPP
    return {name: announce("chat", name, bench_chat.measure(serve, dialects[name], args))
            for name, serve in servers.items()}


def relay(args, mariadb):
    """The relay does not touch the database: one NeoChat column."""
    relays = {NEOCHAT: lambda: bench_cell.Relay("neochat"),  # one thread each: pinned once started
              REFERENCE: lambda: bench_cell.Relay("bare")}
    if turn.installed():
        relays["coturn"] = lambda: turn.Coturn(cpu=SERVER_CPU)  # its relay threads too
    results = {}
    with pinned(BENCH_CPU):
        for name, start in relays.items():
            server = start()
            server.stats.cpu_affinity([SERVER_CPU])
            try:
                results[name] = announce("relay", name, sweep(server, args))
            finally:
                server.quit()
    return results


def sweep(server, args):
    """The largest step held, what stopped the next one, and one call flat out."""
    held = stopped = None
    for calls in (step for step in bench_cell.STEPS if step <= args.max_calls):
        step = bench_cell.run_step(server, calls, args.relay_seconds)
        if not step["held"]:
            stopped = step
            break
        held = step
    rate, cpu = bench_cell.run_flat_out(server)  # datagrams/s, relay CPU µs per datagram
    sweep = {"calls held": held["calls"] if held else 0}
    for name, step in (("held", held), ("next step", stopped)):
        for metric, key, scale in (("p99 ms", "p99", 1000), ("loss %", "loss", 100),
                                   ("relay CPU µs/datagram", "us_per_datagram", 1)):
            sweep[f"{name}: {metric}"] = step[key] * scale if step else None
    sweep["next step: calls"] = stopped["calls"] if stopped else None
    party = f"{bench_cell.RATE} × {bench_cell.SIZE} B/s per party"
    return {f"relay sweep ({party})": sweep,
            "relay, one call flat out": {"datagrams/s": rate, "relay CPU µs/datagram": cpu}}


def ftp(args, mariadb):
    """bench_ftp.py's workloads, NeoChat and the bare server taking turns; on
    MariaDB a second run of both, whose bare figures are left out."""
    payload = os.urandom(args.ftp_mib * 2**20)
    options = argparse.Namespace(rounds=args.ftp_rounds, small=args.ftp_small, clients=args.ftp_clients, db="")
    workload = (f"FTP: a {args.ftp_mib} MiB file, {args.ftp_small} small files, {args.ftp_clients} clients "
                f"(best of {args.ftp_rounds})")
    measured = bench_ftp.measure(options, payload)
    results = {NEOCHAT: {workload: measured["neochat"]}, REFERENCE: {workload: measured["bare"]}}
    if mariadb:
        options.db = mariadb
        results[MARIADB] = {workload: bench_ftp.measure(options, payload)["neochat"]}
    return {name: announce("ftp", name, measured) for name, measured in results.items()}


WORKLOADS = {"chat": chat, "relay": relay, "ftp": ftp}


def announce(workload, name, results):
    print(f"{workload}: {name}: {results}", flush=True)
    return results


@contextlib.contextmanager
def pinned(cpu):
    """This process on ``cpu`` while the block runs."""
    me = psutil.Process()
    before = me.cpu_affinity()
    me.cpu_affinity([cpu])
    try:
        yield
    finally:
        me.cpu_affinity(before)


@contextlib.contextmanager
def mariadb_database(url):
    """A throwaway database on the server of ``url``: yields its URL, or None
    when ``url`` is empty or the server does not answer."""
    if not url:
        yield None
        return
    parts = urlsplit(url)
    try:
        import MySQLdb

        connection = MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                                     user=parts.username or "root", password=parts.password or "",
                                     connect_timeout=3)
    except Exception as error:  # noqa: BLE001 (any failure means: no MariaDB column)
        print(f"MariaDB at {parts.hostname}:{parts.port} does not answer ({error}): skipped", flush=True)
        yield None
        return
    name = f"neochat_t_bench_{os.getpid()}"
    cursor = connection.cursor()
    cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        cursor.execute(f"DROP DATABASE {name}")
        connection.close()


def table(results):
    """{target: {workload: {metric: value}}} as markdown: a column per target,
    the NeoChat columns and the reference first; other cells carry NeoChat / it
    in parentheses."""
    bases = [name for name in (NEOCHAT, MARIADB) if name in results]
    first = [name for name in (*bases, REFERENCE) if name in results]
    names = first + [name for name in results if name not in first]
    workloads = list(dict.fromkeys(workload for name in names for workload in results[name]))
    rows = [(workload, metric) for workload in workloads for metric in dict.fromkeys(
        metric for name in names for metric in results[name].get(workload, {}))]
    lines = ["| workload | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for workload, metric in rows:
        cells = []
        for name in names:
            value = results[name].get(workload, {}).get(metric)
            cell = number(value)
            if name not in bases and value:
                ratios = [results[base].get(workload, {}).get(metric) for base in bases]
                cell += " (" + " / ".join(f"{ratio / value:.2f}" if ratio is not None else "—"
                                          for ratio in ratios) + ")"
            cells.append(cell)
        lines.append(f"| {workload} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def median(values):
    """Of the values that are not None (a relay that held no step has no p99 there)."""
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def number(value):
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    system = next((line.split("=", 1)[1].strip().strip('"') for line in open("/etc/os-release")
                   if line.startswith("PRETTY_NAME=")), platform.system())
    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}, ", "prosody", "ejabberd",
                               "coturn"], capture_output=True, text=True).stdout.strip(", ")
    return (f"{os.cpu_count()} cores ({model}), {system}, Python {platform.python_version()}"
            + (f"; {versions}" if versions else ""))


def load():
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--pairs", type=int, nargs="*", default=[10, 100])
    parser.add_argument("--seconds", type=float, default=5, help="per chat workload")
    parser.add_argument("--rate", type=int, default=2000, help="steady total rate (0: skip)")
    parser.add_argument("--steady-pairs", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000, help="idle logins (0: skip)")
    parser.add_argument("--relay-seconds", type=float, default=3, help="per relay sweep step")
    parser.add_argument("--max-calls", type=int, default=bench_cell.STEPS[-1], help="largest relay step")
    parser.add_argument("--ftp-mib", type=int, default=64)
    parser.add_argument("--ftp-rounds", type=int, default=3)
    parser.add_argument("--ftp-small", type=int, default=200, help="small files per FTP round")
    parser.add_argument("--ftp-clients", type=int, default=20, help="concurrent FTP clients")
    parser.add_argument("--mariadb", default=os.environ.get("NEOCHAT_TEST_MYSQL", TEST_MARIADB),
                        help="a MariaDB server URL where a throwaway database can be created ('': none)")
    parser.add_argument("--repeat", type=int, default=1, help="run everything N times; the table has medians")
    parser.add_argument("--markdown", help="also write the table, the machine and the date to this file")
    args = parser.parse_args()

    started, load_before = datetime.datetime.now(datetime.timezone.utc), load()
    runs = {}  # {target: {workload: {metric: [value of each run]}}}
    for _ in range(args.repeat):
        for workload in args.only:
            with mariadb_database(args.mariadb) as mariadb:
                for name, measured in WORKLOADS[workload](args, mariadb).items():
                    for title, metrics in measured.items():
                        for metric, value in metrics.items():
                            runs.setdefault(name, {}).setdefault(title, {}).setdefault(metric, []).append(value)
    results = {name: {title: {metric: median(values) for metric, values in metrics.items()}
                      for title, metrics in measured.items()} for name, measured in runs.items()}
    report = "\n".join([
        f"{started:%Y-%m-%d %H:%M} UTC, {machine()}; load average {load_before} at the start, "
        f"{load()} at the end (1, 5, 15 min).",
        (f"Medians of {args.repeat} runs. " if args.repeat > 1 else "")
        + "Server and load generator pinned to one core each (FTP unpinned); in parentheses, NeoChat SQLite"
        + (" / NeoChat MariaDB" if MARIADB in results else "") + " divided by that column "
        "(for ms, µs, KB and CPU % lower is better).",
        "",
        table(results),
    ])
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(f"`python -m bench.all {' '.join(sys.argv[1:])}`\n\n{report}\n")


if __name__ == "__main__":
    main()
