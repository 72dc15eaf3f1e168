"""Where a callback may go, and how its body is signed.

**Signature.** ``Bulkflow-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 with the account's webhook secret over ``f"{t}.".encode() + body``.
A receiver recomputes it over the raw body, compares in constant time, and
refuses a ``t`` older than a few minutes (:func:`verify` does all three).

**Addresses.** A callback is made from the API's network, so a URL could aim
it at what only that network reaches (a metadata service, an admin port):
an address that is not global (private, loopback, link-local, reserved...) is
refused unless ``BULKFLOW_WEBHOOK_ALLOW_PRIVATE`` is set: at submit when the
URL names one literally, and at every attempt after resolving the name
(:func:`resolve`), since DNS may answer differently later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time

from bulkflow import constants
from ingest_api.errors import ValidationFailed

SIGNATURE_HEADER = "Bulkflow-Signature"
SECRET_PREFIX = "whsec_"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def new_secret() -> str:
    """``whsec_`` + 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Bulkflow-Signature`` header of ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = constants.WEBHOOK_TOLERANCE,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, within ``tolerance`` seconds of now."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body).encode()
    return any(hmac.compare_digest(expected, v.encode()) for v in fields.get("v1", []))


def refusal(address: IpAddress, allow_private: bool) -> str | None:
    """Why a callback to ``address`` is refused, or None."""
    if allow_private or address.is_global:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped, allow_private)
    return f"{address} is not a public address (BULKFLOW_WEBHOOK_ALLOW_PRIVATE is off)"


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_callback_url(host: str, allow_private: bool) -> None:
    """At submit: 422 if the URL's host is a refused address, literally or as ``localhost``."""
    if allow_private:
        return
    address = _literal(host)
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        address = ipaddress.ip_address("127.0.0.1")
    reason = refusal(address, allow_private) if address is not None else None
    if reason is not None:
        raise ValidationFailed(
            "the callback_url points at an address bulkflow does not call",
            [{"loc": ["callback_url"], "msg": reason, "type": "address_refused"}],
        )


class AddressRefused(Exception):
    """The callback's host resolves to an address bulkflow does not call."""


async def resolve(host: str, port: int, allow_private: bool) -> list[IpAddress]:
    """The host's addresses, every one of them allowed (else :class:`AddressRefused`)."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        reason = refusal(address, allow_private)
        if reason is not None:
            raise AddressRefused(f"{host} resolves to {reason}")
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    return addresses
