"""Rate and connection limits, enforced by nginx with JSON 429s and
Retry-After (limits_stack: 5 r/s burst 10 per client, 50 r/s burst 100 per
IP, 2 requests at once per IP)."""

import socket
import ssl
import time

from conftest import assert_api_error


def assert_429(r):
    err = assert_api_error(r, 429, code="rate_limit_exceeded")
    assert err["type"] == "rate_limit_error"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers.get("X-Request-Id")


def until_limited(stack, limit, **kw):
    """Sends GET /v1/models back to back until the first 429 (at most limit
    requests): (status codes, the 429 response or None, seconds taken)."""
    codes, t0 = [], time.monotonic()
    for _ in range(limit):
        r = stack.get("/v1/models", **kw)
        codes.append(r.status_code)
        if r.status_code == 429:
            return codes, r, time.monotonic() - t0
    return codes, None, time.monotonic() - t0


def test_rate_limit_per_client(limits_stack):
    s = limits_stack
    codes, limited, took = until_limited(s, 300, client="flood")
    assert limited is not None, f"no 429 after {len(codes)} requests in {took:.1f}s"
    assert set(codes[:-1]) == {200}, codes
    # The burst of 10 passes, plus what the 5 r/s rate refilled meanwhile
    # (counted generously, so a slow machine does not fail the test).
    assert 10 <= codes.count(200) <= 11 + 5 * took + 1, (codes.count(200), took)
    assert_429(limited)
    # Another client has its own bucket.
    assert s.get("/v1/models", client="default").status_code == 200
    # The bucket refills.
    time.sleep(int(limited.headers["Retry-After"]) + 0.5)
    assert s.get("/v1/models", client="flood").status_code == 200


def test_rate_limit_per_ip_counts_requests_without_a_key(limits_stack):
    s = limits_stack
    time.sleep(2.5)   # let the per-IP bucket (50 r/s, burst 100) refill
    codes, limited, took = until_limited(s, 2000, client=None)
    assert limited is not None, f"key guessing was never limited ({len(codes)} requests)"
    assert set(codes[:-1]) == {401}, codes
    assert 100 <= codes.count(401) <= 101 + 50 * took + 1, (codes.count(401), took)
    assert_429(limited)
    time.sleep(2.5)


def test_connection_limit(limits_stack):
    # Two requests that stay open: headers sent, body promised but not sent,
    # so nginx holds them (past the limit_conn check) while it waits for it.
    s = limits_stack
    time.sleep(1)
    ctx = ssl.create_default_context(cafile=s.ca)
    port = int(s.url.rsplit(":", 1)[1])
    held = []
    try:
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            c = ctx.wrap_socket(raw, server_hostname="localhost")
            c.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: Bearer {s.keys['default']}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())
            held.append(c)
        time.sleep(0.3)
        assert_429(s.get("/v1/models"))
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    assert s.get("/v1/models").status_code == 200
