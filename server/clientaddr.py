"""The client's address: the direct peer, or what a trusted proxy says it forwarded.

Behind a load balancer or the Kubernetes Ingress every request comes from the proxy, so
throttles keyed on the peer would lump every client together. Forwarded headers are
believed only when the peer is in a configured proxy network; anyone else could forge them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

from tornado.httputil import HTTPServerRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)  # every request parses its peer's address; a few thousand peers at a time at most
def _parse(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket reads ::ffff:a.b.c.d; count it as a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


class ClientAddresses:
    """Says which address a request came from, trusting forwarded headers only from ``trusted`` networks."""

    def __init__(self, trusted: Iterable[str]):
        self._trusted: list[IPNetwork] = [ipaddress.ip_network(net, strict=False) for net in trusted]

    def _is_proxy(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def of(self, peer: str, headers: Mapping[str, str] | None = None, forwarded_for: list[str] | None = None) -> str:
        """The client's address for a request from ``peer`` carrying ``X-Forwarded-For`` lines / ``X-Real-IP``.

        ``X-Forwarded-For`` is read from the right: each proxy appends the address it saw, so the
        nearest hops are our own proxies and the first address outside them is the client. What a
        client wrote further left is never believed.
        """
        peer_address = _parse(peer)
        if not self._is_proxy(peer_address):
            return str(peer_address) if peer_address is not None else peer
        hops = [hop for line in forwarded_for or [] for hop in line.split(",") if hop.strip()]
        if hops:
            client = peer_address
            for hop in reversed(hops):
                address = _parse(hop)
                if address is None:
                    break  # garbage from further out: the last address we could read is the client
                client = address
                if not self._is_proxy(address):
                    break
            return str(client)
        real_ip = _parse((headers or {}).get("X-Real-IP", ""))
        return str(real_ip or peer_address)

    def of_request(self, request: HTTPServerRequest) -> str:
        """The same for a Tornado request (its headers may hold several X-Forwarded-For lines)."""
        return self.of(request.remote_ip or "", request.headers, request.headers.get_list("X-Forwarded-For"))
