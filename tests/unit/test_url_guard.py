"""The SSRF guard's decisions, with an injected resolver (no DNS, no network)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from tasksaga.adapters.url_guard import (
    NOT_PUBLIC,
    UnresolvedHost,
    UnsafeUrl,
    UrlGuard,
    address_problem,
    parse_allowlist,
    parse_legacy_ipv4,
)
from tasksaga.core import NonRetryableError, StepContext, UploadedFile
from tasksaga_examples import video_pipeline

ZONE = {
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example.com": ["10.0.0.7"],
    "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "v6-mapped.example.com": ["::ffff:10.0.0.1"],
    "local.test": ["127.0.0.1"],
}


def resolver(host: str, port: int) -> Sequence[str]:
    if host not in ZONE:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ZONE[host]


GUARD = UrlGuard([], resolver)

# Each refused URL with a word its public reason must contain.
REFUSED = {
    "http://127.0.0.1/": "loopback",
    "http://127.0.0.53:8080/x": "loopback",
    "http://[::1]/": "loopback",
    "http://localhost.localdomain.invalid/": NOT_PUBLIC,
    "http://2130706433/": "dotted quad",  # decimal 127.0.0.1
    "http://0177.0.0.1/": "dotted quad",  # octal
    "http://0x7f.1/": "dotted quad",  # hex, short form
    "http://0x7f000001/": "dotted quad",
    "http://127.1/": "dotted quad",  # short form
    "http://017700000001/": "dotted quad",
    "http://127.0.0.1./": "dotted quad",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped",
    "http://[::ffff:7f00:1]/": "IPv4-mapped",
    "http://[::ffff:93.184.216.34]/": "IPv4-mapped",  # refused whatever it embeds
    "http://[::127.0.0.1]/": "IPv4-compatible",
    "http://[::ffff:0:127.0.0.1]/": "IPv4-translated",
    "http://[64:ff9b::7f00:1]/": "NAT64",
    "http://[2002:7f00:1::1]/": "6to4",
    "http://[2002:a9fe:a9fe::1]/": "6to4",
    "http://10.1.2.3/": "private",
    "http://172.16.0.1/": "private",
    "http://192.168.1.1/": "private",
    "http://[fc00::1]/": "private",
    "http://[fd12:3456::1]/": "private",
    "http://169.254.169.254/latest/meta-data/": "metadata",
    "http://[fd00:ec2::254]/": "metadata",
    "http://100.100.100.200/": "metadata",
    "http://168.63.129.16/": "metadata",
    "http://169.254.1.1/": "link-local",
    "http://[fe80::1]/": "link-local",
    "http://[fe80::1%25eth0]/": "zone id",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://0.0.0.0/": "unspecified",
    "http://[::]/": "unspecified",
    "http://0.1.2.3/": "private",
    "http://100.64.0.1/": "CGNAT",
    "http://100.127.255.254/": "CGNAT",
    "http://240.0.0.1/": "reserved",
    "http://255.255.255.255/": "reserved",
    "http://198.18.0.1/": "private",
    "http://192.0.2.1/": "private",
    "http://internal.example.com/": NOT_PUBLIC,
    "http://mixed.example.com/": NOT_PUBLIC,  # ANY unsafe answer refuses the name
    "http://metadata.example.com/": NOT_PUBLIC,
    "http://v6-mapped.example.com/": NOT_PUBLIC,
    "ftp://hooks.example.com/": "http and https",
    "file:///etc/passwd": "http and https",
    "gopher://hooks.example.com/": "http and https",
    "http://user:pw@hooks.example.com/": "user info",
    "http://hooks.example.com@127.0.0.1/": "user info",
    "http://127.0.0.1\\@hooks.example.com/": "back-slashes",
    "http://hooks.example.com /": "blanks",
    "http:///path": "no host",
    "http://hooks.example.com:0/": "port 0",
    "http://hooks.example.com:99999/": "cannot be parsed",
    "http://[127.0.0.1]/": "cannot be parsed",
    "http://[hooks.example.com]/": "cannot be parsed",
    "http://exa$mple.com/": "cannot contain",
}


@pytest.mark.parametrize("url", list(REFUSED))
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        GUARD.vet(url)
    assert REFUSED[url] in refused.value.public_reason, refused.value.public_reason
    assert GUARD.problem(url) == refused.value.public_reason


def test_every_refusal_counts() -> None:
    blocked = sum(GUARD.problem(url) is not None for url in REFUSED)
    print(f"S1 (guard) blocked/attempted = {blocked}/{len(REFUSED)}")
    assert blocked == len(REFUSED)


def test_a_public_name_is_vetted_with_all_its_addresses() -> None:
    vetted = GUARD.vet("https://Hooks.Example.com:8443/hooks/tasks?token=t#frag")
    assert (vetted.scheme, vetted.host, vetted.port) == ("https", "hooks.example.com", 8443)
    assert vetted.target == "/hooks/tasks?token=t"
    assert vetted.host_header == "hooks.example.com:8443"
    assert vetted.addresses == tuple(ipaddress.ip_address(a) for a in ZONE["hooks.example.com"])
    assert GUARD.problem("http://hooks.example.com") is None
    assert GUARD.vet("http://hooks.example.com").target == "/"
    assert GUARD.vet("http://hooks.example.com").host_header == "hooks.example.com"


def test_public_literals_pass_without_resolving() -> None:
    def no_dns(host: str, port: int) -> Sequence[str]:
        raise AssertionError(f"resolved {host}")

    guard = UrlGuard([], no_dns)
    assert guard.vet("http://93.184.216.34/").addresses == (
        ipaddress.ip_address("93.184.216.34"),)
    v6 = guard.vet("http://[2606:4700::1111]:81/")
    assert (v6.host, v6.host_header) == ("2606:4700::1111", "[2606:4700::1111]:81")
    assert guard.problem("http://[64:ff9b::808:808]/") is None  # NAT64 of 8.8.8.8


def test_name_refusals_do_not_tell_the_submitter_what_a_name_resolves_to() -> None:
    for url in ("http://internal.example.com/", "http://nowhere.example.com/",
                "http://mixed.example.com/"):
        with pytest.raises(UnsafeUrl) as refused:
            GUARD.vet(url)
        assert refused.value.public_reason == NOT_PUBLIC
        assert str(refused.value) == NOT_PUBLIC
    with pytest.raises(UnsafeUrl) as detailed:
        GUARD.vet("http://mixed.example.com/")
    assert "127.0.0.1" in detailed.value.reason  # the log's version names the address


def test_an_unresolvable_name_is_told_apart_for_retrying() -> None:
    with pytest.raises(UnresolvedHost):
        GUARD.vet("http://nowhere.example.com/")
    with pytest.raises(UnresolvedHost):
        UrlGuard([], lambda host, port: []).vet("http://empty.example.com/")


def test_the_allowlist_lets_local_receivers_through() -> None:
    guard = UrlGuard(["127.0.0.2/32", "10.0.0.0/8", "local.test", "[::1]"], resolver)
    assert guard.problem("http://127.0.0.2:9000/hook") is None
    assert guard.problem("http://10.200.0.1/") is None
    assert guard.problem("http://internal.example.com/") is None  # resolves into 10/8
    assert guard.problem("http://local.test/") is None  # allowed by name
    assert guard.problem("http://[::1]:8080/") is None
    assert guard.problem("http://127.0.0.1/") is not None  # outside every entry
    assert guard.problem("http://mixed.example.com/") is not None
    assert guard.problem("http://2130706433/") is not None  # numeric forms: never


def test_metadata_unspecified_and_multicast_are_never_allowlisted() -> None:
    guard = UrlGuard(["0.0.0.0/0", "::/0", "metadata.example.com"], resolver)
    assert guard.problem("http://10.0.0.1/") is None
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://0.0.0.0/",
                "http://224.0.0.1/", "http://metadata.example.com/"):
        assert guard.problem(url) is not None, url


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "1.2.3", "0x7f.1", "*.x.com"])
def test_bad_allowlist_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="TASKSAGA_URL_ALLOWLIST") as bad:
        parse_allowlist(["127.0.0.1/32", entry])
    assert repr(entry) in str(bad.value)


def test_legacy_ipv4_forms_are_decoded_for_the_log() -> None:
    assert {text: str(parse_legacy_ipv4(text)) for text in (
        "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f.0.0x0.01", "10.0x10000",
    )} == {
        "2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "0x7f.1": "127.0.0.1",
        "127.1": "127.0.0.1", "0x7f.0.0x0.01": "127.0.0.1", "10.0x10000": "10.1.0.0",
    }
    assert parse_legacy_ipv4("08.1") is None
    assert parse_legacy_ipv4("256.1.1.1") is None
    assert parse_legacy_ipv4("example.com") is None


def test_address_categories() -> None:
    assert address_problem(ipaddress.ip_address("8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("2606:4700::1111")) is None
    assert address_problem(ipaddress.ip_address("::ffff:8.8.8.8")) is not None


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://2130706433:8080/", "http://[::ffff:10.0.0.1]/"])
def test_the_video_pipelines_webhook_step_refuses_internal_callbacks(url: str) -> None:
    request = video_pipeline.VideoRequest(
        video_file=UploadedFile(bucket="b", key="k", filename="v.mp4", size=1), title="t",
        callback_url=url)
    ctx = StepContext(task_id="t-1", definition=video_pipeline.video_transcode,
                      request=request, step_data_json={}, step="NotifyWebhook")
    with pytest.raises(NonRetryableError, match="callback URL refused: "):
        video_pipeline.notify_webhook(ctx)
