"""Transfer actions: start, watch and abort the two ends of a node-to-node disk stream.

The master issues per-transfer certificates, asks the destination node to listen
(``transfer_receive_start`` answers the port), tells the source node to send, and polls
``transfer_status`` on both until they agree.  The stream itself runs in a background
process on each node (``herd.node.transfer.worker``) and flows node to node; these calls
only manage it.  Everything that can be checked is checked here, before a process starts,
so a bad compression tool, cipher or certificate is an immediate ValidationError on the
right node rather than a failed transfer minutes later.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from cryptography import x509

from herd.crypto.ca import CertKey, verify_cert
from herd.crypto.tls import parse_ciphers
from herd.errors import NotFoundError, ValidationError
from herd.node.actions.registry import NodeContext, action
from herd.node.transfer import net, worker
from herd.node.transfer.codecs import get_codec

#: Transfer ids name a directory and a certificate: a DNS label keeps both safe.
TRANSFER_ID = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _check_id(transfer_id: str) -> None:
    if not TRANSFER_ID.match(transfer_id):
        raise ValidationError("transfer_id", transfer_id, "a DNS label (letters, digits, '-')")


def _check_ip(field: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValidationError(field, value, "an IPv4 or IPv6 address") from exc


def _check_timeouts(connect_timeout: float, stall_timeout: float) -> None:
    for field, value in (("connect_timeout", connect_timeout), ("stall_timeout", stall_timeout)):
        if not value > 0:
            raise ValidationError(field, value, "seconds > 0")


def _credentials(
    transfer_id: str, cert_pem: str, key_pem: str, ca_pem: str, peer_ca_pem: str | None
) -> dict[str, str]:
    """Files for the worker, after checking the pair is usable for exactly this transfer.

    ``require_peer`` is what the receiver applies to its peer; the same rule applied to
    our own certificate catches a master that mixed up two transfers' credentials. Between
    clusters each end's certificate comes from its own cluster's CA, so the peer is
    checked against ``peer_ca_pem`` (received in the domain-secret-signed offer).
    """
    CertKey.from_pem(cert_pem, key_pem)
    cert = verify_cert(cert_pem, ca_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if transfer_id.lower() not in {n.lower() for n in names}:
        raise ValidationError(
            "cert_pem", f"certificate for {names}", f"a certificate issued for {transfer_id}"
        )
    return {"cert.pem": cert_pem, "key.pem": key_pem, "ca.pem": peer_ca_pem or ca_pem}


def _ciphers(ciphers: str | list[str] | None) -> list[str] | None:
    return None if ciphers is None else list(parse_ciphers(ciphers))


@action("transfer_receive_start")
def transfer_receive_start(
    ctx: NodeContext,
    transfer_id: str,
    dest_path: str,
    size_mib: int,
    cert_pem: str,
    key_pem: str,
    ca_pem: str,
    compression: str = "none",
    ciphers: str | list[str] | None = None,
    bind_ip: str = "0.0.0.0",
    peer_ca_pem: str | None = None,
    connect_timeout: float = net.DEFAULT_CONNECT_TIMEOUT,
    stall_timeout: float = net.DEFAULT_STALL_TIMEOUT,
) -> dict[str, Any]:
    """Listen for the sender of ``transfer_id`` and write its disk to ``dest_path``.

    Answers the port to give the sender; a replay answers the same port unchanged.
    """
    _check_id(transfer_id)
    if not os.path.isabs(dest_path):
        raise ValidationError("dest_path", dest_path, "an absolute path")
    if size_mib <= 0:
        raise ValidationError("size_mib", size_mib, "MiB > 0")
    _check_ip("bind_ip", bind_ip)
    _check_timeouts(connect_timeout, stall_timeout)
    get_codec(compression)
    request = {
        "role": "receive",
        "transfer_id": transfer_id,
        "dest_path": dest_path,
        "size_mib": size_mib,
        "compression": compression,
        "ciphers": _ciphers(ciphers),
        "bind_ip": bind_ip,
        "connect_timeout": connect_timeout,
        "stall_timeout": stall_timeout,
    }
    directory = worker.transfer_dir(ctx.root, transfer_id, "receive")
    previous = worker.read_json(directory / "request.json")
    if previous is not None:
        request["port"] = previous.get("port")
        worker.start(directory, request, {})
        return {"changed": False, "port": previous["port"]}
    secrets = _credentials(transfer_id, cert_pem, key_pem, ca_pem, peer_ca_pem)
    with net.listen(bind_ip) as listener:
        request["port"] = listener.getsockname()[1]
        worker.start(directory, request, secrets, listener)
    return {"changed": True, "port": request["port"]}


@action("transfer_send_start")
def transfer_send_start(
    ctx: NodeContext,
    transfer_id: str,
    source_path: str,
    dest_ip: str,
    port: int,
    cert_pem: str,
    key_pem: str,
    ca_pem: str,
    compression: str = "none",
    ciphers: str | list[str] | None = None,
    bandwidth_limit: int | None = None,
    peer_ca_pem: str | None = None,
    connect_timeout: float = net.DEFAULT_CONNECT_TIMEOUT,
    stall_timeout: float = net.DEFAULT_STALL_TIMEOUT,
) -> dict[str, Any]:
    """Stream ``source_path`` (only ever read) to the receiver at ``dest_ip:port``.

    ``bandwidth_limit`` is in bytes per second on the wire (after compression).
    """
    _check_id(transfer_id)
    _check_ip("dest_ip", dest_ip)
    if not 1 <= port <= 65535:
        raise ValidationError("port", port, "1..65535")
    if bandwidth_limit is not None and bandwidth_limit <= 0:
        raise ValidationError("bandwidth_limit", bandwidth_limit, "bytes/s > 0 or null")
    _check_timeouts(connect_timeout, stall_timeout)
    if not os.path.exists(source_path):
        raise NotFoundError(f"source {source_path} does not exist", field="source_path")
    get_codec(compression)
    request = {
        "role": "send",
        "transfer_id": transfer_id,
        "source_path": source_path,
        "dest_ip": dest_ip,
        "port": port,
        "compression": compression,
        "ciphers": _ciphers(ciphers),
        "bandwidth_limit": bandwidth_limit,
        "connect_timeout": connect_timeout,
        "stall_timeout": stall_timeout,
    }
    directory = worker.transfer_dir(ctx.root, transfer_id, "send")
    if worker.read_json(directory / "request.json") is not None:
        return {"changed": worker.start(directory, request, {})}
    secrets = _credentials(transfer_id, cert_pem, key_pem, ca_pem, peer_ca_pem)
    return {"changed": worker.start(directory, request, secrets)}


def _ends(ctx: NodeContext, transfer_id: str, role: str | None) -> list[Path]:
    _check_id(transfer_id)
    if role is not None and role not in worker.ROLES:
        raise ValidationError("role", role, " or ".join(worker.ROLES))
    roles = [role] if role else list(worker.ROLES)
    found = [
        worker.transfer_dir(ctx.root, transfer_id, r)
        for r in roles
        if (worker.transfer_dir(ctx.root, transfer_id, r) / "request.json").exists()
    ]
    if not found:
        raise NotFoundError(f"no transfer {transfer_id} on this node", transfer_id=transfer_id)
    return found


@action("transfer_status")
def transfer_status(ctx: NodeContext, transfer_id: str, role: str | None = None) -> dict[str, Any]:
    """Progress of this node's end of the transfer: state running, done or failed.

    When both ends run on this node (a same-node move) and no ``role`` is given, the
    receiver's view is reported, with state ``failed`` if either end failed: only the
    receiver proves the disk arrived.
    """
    statuses = {d.name: worker.status(d) for d in _ends(ctx, transfer_id, role)}
    main = statuses.get("receive") or statuses["send"]
    failed = [s for s in statuses.values() if s.get("state") == "failed"]
    report = failed[0] if failed else main
    return {
        "changed": False,
        "state": report.get("state"),
        "role": main.get("role"),
        "size": main.get("size"),
        "bytes": main.get("bytes"),
        "data_bytes": main.get("data_bytes"),
        "wire_bytes": main.get("wire_bytes"),
        "rate": main.get("rate"),
        "eta": main.get("eta"),
        "digest": main.get("digest"),
        "throttled_seconds": statuses.get("send", {}).get("throttled_seconds"),
        "error": report.get("error"),
    }


@action("transfer_abort")
def transfer_abort(ctx: NodeContext, transfer_id: str, role: str | None = None) -> dict[str, Any]:
    """Kill this node's end(s) and remove a partially received new disk.

    Unknown transfers are not an error (the master aborts both ends blindly in its undo
    chain); a finished transfer is left as it is.
    """
    try:
        ends = _ends(ctx, transfer_id, role)
    except NotFoundError:
        return {"changed": False}
    changed = False
    for directory in ends:
        changed = worker.abort(directory) or changed
    return {"changed": changed}
