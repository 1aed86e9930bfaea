"""Our MTA-STS policy file (RFC 8461 §3.2) from the live web listener: served on the host
``mta-sts.<hosted domain>`` only, byte for byte the policy whose digest the published TXT
record carries, and one our own delivery side accepts."""

from __future__ import annotations

import httpx
import pytest

from pillarbox.dns.records import mta_sts_id, required_records
from pillarbox.queue.mtasts import Mode, Policy, parse_policy, parse_record
from pillarbox.testing.live import LiveServer

pytestmark = pytest.mark.listeners("http")

PATH = "/.well-known/mta-sts.txt"


def get(live: LiveServer, host: str, path: str = PATH) -> httpx.Response:
    url = f"http://127.0.0.1:{live.port('http')}{path}"
    return httpx.get(url, headers={"Host": host}, timeout=10)


def test_the_policy_is_served_on_the_policy_host(live: LiveServer) -> None:
    response = get(live, "mta-sts.example.org")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    expected = required_records("example.org", mail_host=live.config.server.hostname)
    assert response.text == expected.mta_sts_policy
    # The TXT record published for the domain names this very text (§3.1 id).
    [txt] = [r.value for r in expected.records if r.name == "_mta-sts.example.org"]
    record = parse_record([txt.encode()])
    assert record is not None and record.id == mta_sts_id(response.text)
    assert parse_policy(response.content) == Policy(Mode.TESTING, ("mx.test",), 86400)
    # A port in Host and a final dot change nothing.
    assert get(live, f"MTA-STS.example.org.:{live.port('http')}").text == response.text


@pytest.mark.parametrize(
    "host",
    [
        "mta-sts.elsewhere.test",
        "example.org",
        "mta-sts.",
        "127.0.0.1",
        "[::1]:80",
        "mta-sts.a..b",
        "mta-sts.-a.test",
    ],
)
def test_other_hosts_get_404(live: LiveServer, host: str) -> None:
    assert get(live, host).status_code == 404
