"""``herd``: the command line. A client only: it submits jobs and reads state.

Op commands (``herd cluster init``, ``herd node add`` …) are generated from the op
registry, read from its cached spec (``herd.cli.opspec``); the fixed commands here are
the queue, config and daemon verbs.

Scripts call the CLI in loops, so start-up time matters: modules that only some commands
need (the API client, subprocess, logging, the master daemon) are imported inside the
functions that use them, and ``--help`` or argument parsing loads none of them; the
client itself loads ssl and http.client only for an ``https://`` master.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from herd import __version__
from herd.cli import output
from herd.cli.opargs import (
    add_op_arguments,
    add_secret_argument,
    collect_op_params,
    help_text,
    read_secret,
)
from herd.cli.opspec import load_spec
from herd.errors import HerdError, MasterUnreachableError

if TYPE_CHECKING:
    from herd.client import Client

LIST_COLUMNS = {
    "nodegroups": ["name", "alloc_policy", "tags"],
    "nodes": [
        "name",
        "primary_ip",
        "secondary_ip",
        "group_name",
        "master_candidate",
        "drained",
        "offline",
        "total_memory_mib",
        "cpus",
    ],
    "instances": ["name", "primary_node_name", "disk_template", "hypervisor", "os", "admin_state"],
}
QUERY_NOUNS = {"group": "nodegroups", "node": "nodes", "instance": "instances"}


def build_parser(argv: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command tree, or with ``argv`` only the branch it names.

    argparse spends most of the CLI's start-up building parsers (and looking up their
    translations) for commands nobody asked for, so given ``argv`` a noun's verbs and a
    verb's options are added only when a word of ``argv`` names them; the others get just
    their name and help line, which is all ``--help`` and "invalid choice" need.
    """
    parser = _Parser(prog="herd", description="Ganeti-style cluster manager")
    parser.add_argument("--version", action="version", version=f"herd {__version__}")
    parser.add_argument("--socket", default=None, help="master API socket (env HERD_SOCKET)")
    parser.add_argument(
        "--api-url", default=None, help="remote master, https://HOST:PORT (env HERD_API_URL)"
    )
    add_secret_argument(parser, "api_token", "API token")
    parser.add_argument(
        "--api-user",
        default=None,
        help="API user (env HERD_API_USER); password from env HERD_API_PASSWORD or a prompt",
    )
    parser.add_argument(
        "--api-ca", default=None, help="cluster CA file to verify the master (env HERD_API_CA)"
    )
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table")
    tree = _Tree(parser.add_subparsers(dest="noun", required=True, metavar="COMMAND"), argv)

    if master := tree.command("master", "run the master daemon"):
        _add_master_options(master)

    if jl := tree.verb("job", "the job queue", "list", "list jobs, newest first"):
        jl.add_argument("--status", default=None)
        jl.add_argument("--limit", type=int, default=50)
    for verb, text in (
        ("info", "show one job"),
        ("cancel", "cancel a job not yet running"),
        ("watch", "follow a job's log until it ends"),
    ):
        if sub := tree.verb("job", "", verb, text):
            sub.add_argument("job_id", type=int)

    cfg = "whole-state backup"
    if cfg_dump := tree.verb(
        "config", cfg, "dump", "print the whole state as JSON, secrets redacted"
    ):
        cfg_dump.add_argument(
            "--file", default=None, help="write to this file (mode 0600) instead of stdout"
        )
        cfg_dump.add_argument(
            "--with-secrets",
            action="store_true",
            help="include the domain secret and DRBD secrets (root on the master only); "
            "'config restore' needs such a dump",
        )
    if restore := tree.verb("config", cfg, "restore", "replace the whole state from a dump file"):
        restore.add_argument("file")
        _add_job_options(restore)

    tree.verb("queue", "queue settings", "info", "show limits and counts")
    if qs := tree.verb("queue", "", "set", "change limits at run time"):
        qs.add_argument("--max-running", type=int, required=True)

    tree.verb("lock", "locks", "list", "show held and wanted locks")

    for noun, text in (
        ("token", "API tokens for the HTTPS API (root on the master)"),
        ("user", "API users for the HTTPS API (root on the master)"),
    ):
        create, what = ("create", "create a token and print it (shown only once)")
        if noun == "user":
            create, what = ("add", "add a user; the password is read from stdin")
        if sub := tree.verb(noun, text, create, what):
            sub.add_argument("name")
            sub.add_argument("--read-only", action="store_true", help="may only read (GET)")
        tree.verb(noun, text, "list", f"list {noun}s" + (" (names only)" * (noun == "token")))
        drop = "revoke" if noun == "token" else "remove"
        if sub := tree.verb(noun, text, drop, f"{drop} a {noun}"):
            sub.add_argument("name")

    for op in load_spec():
        noun, verb = op.op_id.split(".", 1)
        if (noun, verb) in _FIXED:
            continue
        cli_verb = verb.replace("_", "-")
        if sub := tree.verb(noun, f"{noun} commands", cli_verb, help_text(op.summary)):
            params = op.params
            add_op_arguments(sub, params)
            _add_job_options(sub)
            sub.set_defaults(op_id=op.op_id, op_params=params)
    for noun, kind in QUERY_NOUNS.items():
        for verb, text in (("list", f"list {kind}"), ("info", f"details of {kind}")):
            if sub := tree.verb(noun, f"{noun} commands", verb, text):
                sub.add_argument("names", nargs="*")
    tree.verb("cluster", "cluster commands", "info", "cluster settings")
    tree.verb("cluster", "", "ca", "print the cluster CA certificate (PEM) to verify HTTPS with")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, or a stand-in for a command that is not on the command line.

    argparse wants a parser object for every choice of a subcommand but only ever parses
    the one named; setting up the others (each with its ``-h`` and headings, every string
    a translation catalogue lookup) was most of the time spent building the tree. A
    stand-in skips that set-up: it only fills a slot in the choices, and only commands
    whose word is absent from ``argv`` get one.
    """

    def __init__(self, *args: Any, stand_in: bool = False, **kwargs: Any) -> None:
        if not stand_in:
            super().__init__(*args, **kwargs)


class _Tree:
    """Nouns and verbs added to the parser, filled in only where ``argv`` asks for them."""

    def __init__(self, nouns: Any, argv: Collection[str] | None) -> None:
        self.nouns = nouns
        self.words = None if argv is None else set(argv)
        self.verbs: dict[str, Any] = {}

    def wanted(self, word: str) -> bool:
        return self.words is None or word in self.words

    def command(self, noun: str, text: str) -> argparse.ArgumentParser | None:
        """A noun with no verbs; its parser if its options are wanted."""
        return self._choice(self.nouns, noun, text)

    def verb(
        self, noun: str, noun_help: str, verb: str, text: str
    ) -> argparse.ArgumentParser | None:
        """Add ``noun verb``; its parser if its options are wanted, else None.

        ``noun_help`` counts where the noun first appears; later calls may pass "".
        """
        if noun not in self.verbs:
            sub = self._choice(self.nouns, noun, noun_help)
            self.verbs[noun] = (
                None if sub is None else sub.add_subparsers(dest="verb", required=True)
            )
        verbs = self.verbs[noun]
        if verbs is None:
            return None
        return self._choice(verbs, verb, text)

    def _choice(self, choices: Any, word: str, text: str) -> argparse.ArgumentParser | None:
        """Add the command ``word`` to ``choices``: its parser if wanted, else a stand-in
        and None."""
        if not self.wanted(word):
            choices.add_parser(word, help=text, stand_in=True)
            return None
        parser: argparse.ArgumentParser = choices.add_parser(word, help=text)
        return parser


def _add_master_options(master: argparse.ArgumentParser) -> None:
    master.add_argument("--state-dir", default=None, help="state directory (env HERD_STATE_DIR)")
    master.add_argument("--max-running", type=int, default=None)
    master.add_argument("--log-level", default="INFO")
    master.add_argument("--daemon", action="store_true", help="detach and return when ready")
    master.add_argument(
        "--https-bind",
        default=None,
        metavar="HOST:PORT",
        help="also serve the API over HTTPS here, e.g. 0.0.0.0:8443 (env HERD_HTTPS_BIND)",
    )
    master.add_argument(
        "--rapi-bind",
        default=None,
        metavar="HOST:PORT",
        help="serve Ganeti's RAPI v2 over HTTPS here, e.g. 0.0.0.0:5080 (env HERD_RAPI_BIND)",
    )


def _add_job_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--submit", action="store_true", help="print the job id and return")
    sub.add_argument("--priority", type=int, default=None, help="-20..19; high -10, low 10")
    sub.add_argument("--reason", default=None, help="why: recorded in the job's reason trail")
    sub.add_argument("--timeout", type=float, default=None, help="seconds to wait for the job")


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(words).parse_args(words)
    try:
        return _dispatch(args)
    except HerdError as exc:
        print(f"herd: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``herd job info 1 | head``): not an error worth a trace.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def _dispatch(args: argparse.Namespace) -> int:
    if args.noun == "master":
        return _run_master(args)
    client = _client(args)
    if getattr(args, "op_id", None):
        params = collect_op_params(args, args.op_params)
        if args.op_id == "cluster.init" and client.socket_path is not None:
            ensure_master(client.socket_path)
        return _run_job(client, args, [{"op": args.op_id, **params}])
    handler = _FIXED.get((args.noun, args.verb))
    if handler is None:
        raise HerdError(f"unknown command: {args.noun} {args.verb}")
    return handler(client, args)


def _client(args: argparse.Namespace) -> Client:
    """The local socket unless a remote master is named (``--api-url``/HERD_API_URL)."""
    from herd.client import Client

    password = None
    if args.api_user and not os.environ.get("HERD_API_PASSWORD"):
        import getpass

        password = getpass.getpass(f"password for API user {args.api_user}: ")
    return Client(
        args.socket,
        api_url=args.api_url,
        token=read_secret(args, "api_token"),
        user=args.api_user,
        password=password,
        ca_file=args.api_ca,
    )


def _run_job(client: Client, args: argparse.Namespace, ops: list[dict[str, Any]]) -> int:
    reason = [["cli:herd", args.reason or f"herd {args.noun} {args.verb}", time.time()]]
    job_id = client.submit(ops, priority=args.priority, reason=reason)
    if args.submit:
        print(job_id)
        return 0
    progress = output.Progress()
    print(f"job {job_id} submitted", file=sys.stderr)
    try:
        doc = client.wait(job_id, args.timeout, on_log=progress)
    finally:
        progress.close()
    result = doc["ops"][-1]["result"]
    if doc["status"] != "success":
        err = doc.get("error") or {"message": doc["status"]}
        print(f"herd: job {job_id} {doc['status']}: {err.get('message')}", file=sys.stderr)
        return 1
    if args.output == "json":
        output.emit_json(result)
    elif isinstance(result, dict):
        output.key_values(result)
    elif result is not None:
        print(output.fmt(result))
    return 0


def _run_master(args: argparse.Namespace) -> int:
    import logging

    from herd.client import default_socket

    state_dir = args.state_dir or os.environ.get("HERD_STATE_DIR", "/var/lib/herd")
    socket_path = args.socket or default_socket()
    if args.daemon:
        extra = ["--log-level", args.log_level]
        if args.max_running is not None:
            extra += ["--max-running", str(args.max_running)]
        if args.https_bind:
            extra += ["--https-bind", args.https_bind]
        if args.rapi_bind:
            extra += ["--rapi-bind", args.rapi_bind]
        start_master_background(socket_path, state_dir, extra=extra)
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from herd.master.daemon import Master, default_https_bind, default_rapi_bind

    Master(
        state_dir,
        socket_path,
        max_running=args.max_running,
        https_bind=args.https_bind or default_https_bind(),
        rapi_bind=args.rapi_bind or default_rapi_bind(),
    ).serve()
    return 0


def start_master_background(
    socket_path: str, state_dir: str, wait: float = 15.0, extra: list[str] | None = None
) -> None:
    """Start ``herd master`` detached, log to the state dir, return once it answers."""
    import subprocess
    from pathlib import Path

    if _master_answers(socket_path):
        raise HerdError(f"a herd master already answers at {socket_path}", socket=socket_path)
    Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = Path(state_dir) / "master.log"
    logfile = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "herd.cli.main",
            "--socket",
            socket_path,
            "master",
            "--state-dir",
            state_dir,
            *(extra or []),
        ],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=logfile,
        start_new_session=True,
    )
    logfile.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _master_answers(socket_path):
            return
        if child.poll() is not None:
            raise HerdError(
                f"the master exited with status {child.returncode} while starting; see {log_path}",
                log=str(log_path),
            )
        time.sleep(0.05)
    raise HerdError(f"the master did not come up within {wait:g} s; see {log_path}")


def _master_answers(socket_path: str) -> bool:
    from herd.client import Client

    try:
        with Client(socket_path, timeout=2) as c:
            c.info()
    except MasterUnreachableError:
        return False
    return True


def ensure_master(socket_path: str) -> None:
    if not _master_answers(socket_path):
        start_master_background(socket_path, os.environ.get("HERD_STATE_DIR", "/var/lib/herd"))


def _job_list(client: Client, args: argparse.Namespace) -> int:
    items = client.jobs(args.status, args.limit)
    if args.output == "json":
        output.emit_json(items)
    else:
        output.table(items, ["id", "status", "priority", "summary", "received_at", "ended_at"])
    return 0


def _job_info(client: Client, args: argparse.Namespace) -> int:
    doc = client.job(args.job_id)
    if args.output == "json":
        output.emit_json(doc)
        return 0
    log_lines = doc.pop("log", [])
    output.key_values({k: v for k, v in doc.items() if k != "ops"})
    for i, op in enumerate(doc["ops"]):
        print(f"op {i}: {op['op']} {op['status']}")
        output.key_values(
            {"params": op["params"], "result": op["result"], "error": op["error"]}, indent="  "
        )
    for entry in log_lines:
        output.Progress(sys.stdout)(entry | {"type": "message"})
    return 0


def _job_cancel(client: Client, args: argparse.Namespace) -> int:
    result = client.cancel(args.job_id)
    print(f"job {result['id']}: {result['status']}")
    return 0


def _job_watch(client: Client, args: argparse.Namespace) -> int:
    progress = output.Progress(sys.stdout)
    doc = client.wait(args.job_id, None, on_log=progress)
    progress.close()
    print(f"job {args.job_id}: {doc['status']}")
    return 0 if doc["status"] == "success" else 1


def _config_dump(client: Client, args: argparse.Namespace) -> int:
    data = client.dump(with_secrets=args.with_secrets)
    if args.file:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    else:
        output.emit_json(data)
    return 0


def _config_restore(client: Client, args: argparse.Namespace) -> int:
    with open(args.file) as f:
        data = json.load(f)
    return _run_job(client, args, [{"op": "config.restore", "data": data}])


def _queue_info(client: Client, args: argparse.Namespace) -> int:
    doc = client.queue()
    output.emit_json(doc) if args.output == "json" else output.key_values(doc)
    return 0


def _queue_set(client: Client, args: argparse.Namespace) -> int:
    doc = client.set_queue(args.max_running)
    output.emit_json(doc) if args.output == "json" else output.key_values(doc)
    return 0


def _lock_list(client: Client, args: argparse.Namespace) -> int:
    items = client.locks()
    if args.output == "json":
        output.emit_json(items)
    else:
        output.table(items, ["level", "name", "mode", "holders", "pending"])
    return 0


def _query(client: Client, args: argparse.Namespace) -> int:
    kind = QUERY_NOUNS[args.noun]
    items = client.query(kind, args.names or None)
    if args.output == "json" or args.verb == "info":
        if args.output == "json":
            output.emit_json(items)
        else:
            for item in items:
                output.key_values(item)
                print()
    else:
        output.table(items, LIST_COLUMNS[kind])
    return 0


def _cluster_info(client: Client, args: argparse.Namespace) -> int:
    doc = client.query("cluster")
    output.emit_json(doc) if args.output == "json" else output.key_values(doc)
    return 0


def _cluster_ca(client: Client, args: argparse.Namespace) -> int:
    sys.stdout.write(client.query("cluster")["ca_cert_pem"])
    return 0


def _token_create(client: Client, args: argparse.Namespace) -> int:
    token = client.create_token(args.name, args.read_only)
    print(token)
    print(f"token {args.name}: shown only this once; the master keeps a hash", file=sys.stderr)
    return 0


def _user_add(client: Client, args: argparse.Namespace) -> int:
    """The password comes from stdin (a prompt on a terminal), never argv, where ``ps``
    would show it."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    client.add_user(args.name, password, args.read_only)
    return 0


def _credential_list(client: Client, args: argparse.Namespace) -> int:
    items = client.credentials(f"{args.noun}s")
    if args.output == "json":
        output.emit_json(items)
    else:
        output.table(items, ["name", "read_only", "created"])
    return 0


def _credential_remove(client: Client, args: argparse.Namespace) -> int:
    client.remove_credential(f"{args.noun}s", args.name)
    return 0


_FIXED = {
    ("job", "list"): _job_list,
    ("job", "info"): _job_info,
    ("job", "cancel"): _job_cancel,
    ("job", "watch"): _job_watch,
    ("config", "dump"): _config_dump,
    ("config", "restore"): _config_restore,
    ("queue", "info"): _queue_info,
    ("queue", "set"): _queue_set,
    ("lock", "list"): _lock_list,
    ("cluster", "info"): _cluster_info,
    ("cluster", "ca"): _cluster_ca,
    ("token", "create"): _token_create,
    ("token", "list"): _credential_list,
    ("token", "revoke"): _credential_remove,
    ("user", "add"): _user_add,
    ("user", "list"): _credential_list,
    ("user", "remove"): _credential_remove,
    **{(noun, verb): _query for noun in QUERY_NOUNS for verb in ("list", "info")},
}

if __name__ == "__main__":
    sys.exit(main())
