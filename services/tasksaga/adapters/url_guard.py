"""The SSRF guard for callback and webhook URLs: only public http(s) receivers get a request.

``UrlGuard(allowlist).vet(url)`` parses the URL, resolves its host (the resolver is an
argument, so tests inject one) and returns a ``VettedUrl`` holding every address the name
resolved to, or raises ``UnsafeUrl``. Refused:

- schemes other than http and https, user info (``user@``), back-slashes, blanks, port 0;
- numeric IPv4 hosts in any form but the canonical dotted quad (``2130706433``,
  ``0177.0.0.1``, ``0x7f.1``, ``127.1``): parsers disagree about them, so none is trusted;
- any address that is not publicly routable: loopback, private (RFC 1918, ULA), link-local,
  multicast, unspecified, reserved and other special-purpose ranges, CGNAT ``100.64.0.0/10``,
  the cloud metadata addresses, IPv4-mapped / -compatible / -translated IPv6, and NAT64 or
  6to4 addresses whose embedded IPv4 address is any of those;
- a name if ANY of its addresses is refused: an attacker's name may list a public address
  first and a private one second.

The allowlist (``TASKSAGA_URL_ALLOWLIST``: CIDRs and/or host names) lets local receivers of
development and tests through. Metadata and unspecified addresses are refused even then: no
receiver ever lives there, and an allowlisted ``169.254.0.0/16`` would expose credentials.

Vetting alone is not enough: a name may resolve to a public address now and a private one a
moment later (DNS rebinding). Callers must connect to ``VettedUrl.addresses`` and never
resolve the name again (see ``tasksaga.notifier.pinned_http``).

``UnsafeUrl.reason`` is detailed (it names resolved addresses) and is for logs only;
``UnsafeUrl.public_reason`` depends only on what the caller wrote or on whether the name
resolves publicly, and is safe to show the submitter (in a 422, a delivery outcome).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# host, port -> the addresses (as text) a connection could go to.
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048

# AWS/GCP/Azure/OpenStack/Oracle 169.254.169.254, AWS IPv6 fd00:ec2::254, Alibaba
# 100.100.100.200, Azure's wire server 168.63.129.16 (a public address: only this list
# catches it).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16",
))
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")

_HOST_NAME = re.compile(r"^(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                        r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$")
_NUMBER_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_CANONICAL_IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                             r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$")

# What a submitter may be told. Refusals that depend on DNS answers all read the same, so
# the message never tells whether a name exists or what it points to.
NOT_PUBLIC = "the host does not resolve to public addresses only"


class UnsafeUrl(ValueError):
    """A URL the guard refuses. ``str()`` is the public reason; ``reason`` is for logs."""

    def __init__(self, public_reason: str, reason: str | None = None) -> None:
        super().__init__(public_reason)
        self.public_reason = public_reason
        self.reason = reason or public_reason


class UnresolvedHost(UnsafeUrl):
    """The host name did not resolve (possibly a transient DNS failure: worth a retry)."""


@dataclass(frozen=True)
class VettedUrl:
    """A URL the guard accepted, and the addresses a connection to it may use."""

    url: str
    scheme: str
    host: str  # lower case, no brackets, no trailing dot: the Host header and TLS name
    port: int
    target: str  # path and query, as written ("/" when empty); the fragment is dropped
    addresses: tuple[IPAddress, ...]  # all vetted; connect to these, never re-resolve

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address ``getaddrinfo`` gives for a TCP connection to ``host``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(ip: IPAddress) -> str | None:
    """Why a connection to ``ip`` is refused (a category name), or None for a public one."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped IPv6 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            kind, v4, always = embedded
            inner = address_problem(v4)
            if always or inner is not None:
                return f"{kind} IPv6 address embedding {v4} ({inner or 'refused in any case'})"
            return None
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or (isinstance(ip, ipaddress.IPv6Address) and ip in NAT64_LOCAL):
        return "a special-purpose address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address, bool] | None:
    """(kind, the IPv4 address inside, refused whatever it is) for IPv6 forms carrying one."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped", ip.ipv4_mapped, True
    if ip in IPV4_TRANSLATED:
        return "an IPv4-translated", low32, True
    if ip in IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not carriers
        return "an IPv4-compatible", low32, True
    if ip in NAT64:
        return "a NAT64", low32, False
    if ip.sixtofour is not None:
        return "a 6to4", ip.sixtofour, False
    return None


def _ip_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What ``inet_aton`` (and browsers) make of a numeric host: ``0x7f.1`` is 127.0.0.1.

    None when the text is not such a number. Only used to name the address in a refusal:
    such hosts are refused whatever they decode to.
    """
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER_LABEL.match(p) for p in parts):
        return None
    try:
        values = [_legacy_number(part) for part in parts]
    except ValueError:  # e.g. "08": not octal
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _legacy_number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def parse_allowlist(entries: Iterable[str]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """CIDRs (or bare addresses) and host names; ValueError naming a bad entry."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if "/" in entry or _ip_or_none(entry.strip("[]")) is not None:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError as error:
                raise ValueError(
                    f"TASKSAGA_URL_ALLOWLIST: {raw!r} is not a CIDR: {error}") from None
        elif _HOST_NAME.match(entry) and not _NUMBER_LABEL.match(entry.rstrip(".").split(".")[-1]):
            names.add(entry.rstrip("."))
        else:
            raise ValueError(f"TASKSAGA_URL_ALLOWLIST: {raw!r} is neither a CIDR nor a host name")
    return tuple(networks), frozenset(names)


class UrlGuard:
    """Vets callback URLs; see the module's docstring for what is refused and why."""

    def __init__(self, allowlist: Iterable[str] = (), resolver: Resolver = system_resolver
                 ) -> None:
        self._networks, self._names = parse_allowlist(allowlist)
        self._resolve = resolver

    def problem(self, url: str) -> str | None:
        """The public reason ``url`` is refused (fit for a 422 body), or None if accepted."""
        try:
            self.vet(url)
        except UnsafeUrl as error:
            return error.public_reason
        return None

    def vet(self, url: str) -> VettedUrl:
        scheme, host, port, target = _split(url)
        literal = _ip_or_none(host)
        if literal is not None:
            addresses: tuple[IPAddress, ...] = (literal,)
        else:
            addresses = self._resolved(host, port)
        allowed_name = host in self._names
        for ip in addresses:
            problem = address_problem(ip)
            if problem is None or self._allowed(ip, allowed_name):
                continue
            if literal is not None:
                raise UnsafeUrl(f"the host is {problem}", f"{host} is {problem}")
            raise UnsafeUrl(NOT_PUBLIC, f"{host} resolves to {ip}, {problem}"
                            f" (all answers: {', '.join(map(str, addresses))})")
        return VettedUrl(url, scheme, host, port, target, addresses)

    def _allowed(self, ip: IPAddress, allowed_name: bool) -> bool:
        if ip in METADATA_ADDRESSES or ip.is_unspecified or ip.is_multicast:
            return False  # never a receiver, allowlist or not (see the module docstring)
        return allowed_name or any(ip in net for net in self._networks)

    def _resolved(self, host: str, port: int) -> tuple[IPAddress, ...]:
        try:
            answers = self._resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise UnresolvedHost(NOT_PUBLIC, f"{host} does not resolve: {error}") from None
        addresses = []
        for answer in answers:
            ip = _ip_or_none(answer)
            if ip is None:
                raise UnsafeUrl(NOT_PUBLIC, f"{host}: the resolver answered {answer!r}")
            addresses.append(ip)
        if not addresses:
            raise UnresolvedHost(NOT_PUBLIC, f"{host} resolves to no address")
        return tuple(dict.fromkeys(addresses))


def _split(url: str) -> tuple[str, str, int, str]:
    """scheme, host, port, target of an acceptable URL; UnsafeUrl saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise UnsafeUrl("the URL contains blanks, control characters or back-slashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"the URL cannot be parsed ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeUrl("only http and https URLs are accepted")
    if "@" in parts.netloc:
        raise UnsafeUrl("user info (user@host) is not accepted in the URL")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UnsafeUrl("the URL has no host")
    if port == 0:
        raise UnsafeUrl("port 0 is not a valid port")
    host = _host(raw_host, bracketed=parts.netloc.startswith("["))
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port or DEFAULT_PORTS[scheme], target


def _host(raw: str, bracketed: bool) -> str:
    if bracketed:
        if "%" in raw:
            raise UnsafeUrl("scoped IPv6 addresses (with a zone id) are not accepted")
        ip = _ip_or_none(raw)
        if not isinstance(ip, ipaddress.IPv6Address):
            raise UnsafeUrl("the bracketed host is not an IPv6 address")
        return str(ip)
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeUrl("the host name is not a valid internationalized name") from None
    labels = host.rstrip(".").split(".")
    if _NUMBER_LABEL.match(labels[-1]):
        # Ends in a number: an IPv4 address (as in the WHATWG URL standard), which must be
        # written as a canonical dotted quad.
        if _CANONICAL_IPV4.match(host):
            return host
        decoded = parse_legacy_ipv4(host)
        meaning = f" (read as {decoded} by some parsers)" if decoded is not None else ""
        raise UnsafeUrl("numeric hosts must be written as a dotted quad such as 192.0.2.1",
                        f"non-canonical numeric host {host!r}{meaning}")
    if not _HOST_NAME.match(host):
        raise UnsafeUrl("the host name contains characters a host name cannot contain")
    return host.rstrip(".")
