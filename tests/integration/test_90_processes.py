"""Process management under traffic: reloads (pool SIGHUP, nginx HUP) do not
drop requests, a killed worker is replaced, scripts/up refuses a second
start. Runs last: it changes and restores the main stack's config."""

import os
import re
import signal
import subprocess
import threading
import time

import requests

from conftest import ROOT, assert_api_error


class Traffic:
    """Sends requests from a background thread until stopped; records every
    status (or exception) so a test can assert nothing was dropped.

    Each request goes on a new connection (Connection: close): an idle
    keep-alive connection that a reloading nginx closes while the client
    reuses it is HTTP's own race (clients retry it), not a dropped request,
    whereas a connection nginx accepted must be served."""

    def __init__(self, stack, chat=True):
        self.stack, self.chat = stack, chat
        self.results = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                if self.chat and i % 2:
                    r = self.stack.post("/v1/chat/completions",
                                        {"model": self.stack.model, "max_tokens": 2,
                                         "messages": [{"role": "user", "content": "Hello"}]},
                                        headers={"Connection": "close"})
                else:
                    r = self.stack.get("/v1/models", headers={"Connection": "close"})
                self.results.append(r.status_code)
            except Exception as e:   # noqa: BLE001 -- recorded, asserted below
                self.results.append(repr(e))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(60)


def workers_state(h):
    """(alive, configured) from a /health body."""
    w = h["workers"]
    return w["alive"], w["configured"]


def set_conf(path, key, value):
    with open(path) as f:
        text = f.read()
    new, n = re.subn(rf"\b{key} = [0-9]+;", f"{key} = {value};", text)
    assert n == 1, f"{key} not found once in {path}"
    with open(path, "w") as f:
        f.write(new)
    return text


def status_connections(st):
    """Open connections to the stack's status socket (ss lists the pool's end
    of each with the socket's path)."""
    path = os.path.join(st.dir, "run", "edgegate.sock.status")
    out = subprocess.run(["ss", "-x", "-H", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    return sum(path in line.split() for line in out.splitlines())


def test_status_connections_are_kept_open(stack):
    """/health, /v1/models and /metrics reach the pool over connections nginx
    keeps open to the status socket; with a connection per request none
    would be left once the requests are answered."""
    for path in ("/health", "/v1/models", "/metrics", "/health"):
        assert stack.get(path).status_code == 200
    assert status_connections(stack) > 0, "no connection is kept open to the status socket"


def test_worker_lets_status_connections_go_before_it_generates(slow_stack):
    """With its kept connections open, a worker taking a chat request would
    leave nginx free to send /health down one of them, to wait behind the
    whole generation: it closes them first."""
    s = slow_stack
    for _ in range(4):
        assert s.get("/health").status_code == 200
    assert status_connections(s) > 0
    r = s.post("/v1/chat/completions",
               {"model": s.model, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
               headers={"Cache-Control": "no-cache"})
    assert r.status_code == 200, r.text
    end = time.monotonic() + 5
    while status_connections(s) and time.monotonic() < end:
        time.sleep(0.05)
    assert status_connections(s) == 0, "the worker kept its status connections while generating"


def test_status_requests_survive_workers_starting_generations(stack):
    """Before a worker generates it closes the status connections it keeps;
    a /health that nginx sends on one of them just then is sent again on a
    new connection, never lost."""
    results, stop = [], threading.Event()

    def poll():
        s = requests.Session()
        s.trust_env, s.verify = False, stack.ca
        while not stop.is_set():
            try:
                results.append(s.get(stack.url + "/health", timeout=30).status_code)
            except Exception as e:   # noqa: BLE001 -- recorded, asserted below
                results.append(repr(e))
        s.close()

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        chats = []
        for i in range(20):
            r = stack.post("/v1/chat/completions",
                           {"model": stack.model, "max_tokens": 2,
                            "messages": [{"role": "user", "content": f"Hello {i}"}]},
                           headers={"Cache-Control": "no-cache"})
            chats.append(r.status_code)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert chats == [200] * 20, chats
    assert len(results) >= 20, results
    assert all(x == 200 for x in results), [x for x in results if x != 200][:10]


def test_pool_sighup_reloads_config_without_dropping_requests(stack):
    conf = os.path.join(stack.dir, "edgegate.conf")
    old_workers = set(stack.worker_pids())
    assert len(old_workers) == 2, old_workers
    original = set_conf(conf, "default_max_tokens", 3)
    try:
        with Traffic(stack) as t:
            time.sleep(0.5)
            os.kill(stack.pool_pid(), signal.SIGHUP)
            # Wait until every worker has been replaced by one with the new config.
            end = time.monotonic() + 30
            while time.monotonic() < end:
                now = set(stack.worker_pids())
                if len(now) == 2 and not (now & old_workers):
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        assert t.results, "no traffic was sent"
        assert all(s == 200 for s in t.results), f"requests failed during reload: {t.results}"
        assert not (set(stack.worker_pids()) & old_workers), "workers were not replaced"
        r = stack.chat(temperature=0)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] <= 3, "new default_max_tokens not applied"
    finally:
        with open(conf, "w") as f:
            f.write(original)
        os.kill(stack.pool_pid(), signal.SIGHUP)
    stack.wait_health(want=lambda h: workers_state(h)[0] == workers_state(h)[1])


def test_nginx_reload_picks_up_a_new_key_without_dropping_requests(stack):
    keys = os.path.join(ROOT, "scripts", "keys")
    keydir = os.path.join(stack.dir, "keys")
    subprocess.run([keys, "--dir", keydir, "--client", "late"], check=True, capture_output=True)
    late = subprocess.run([keys, "--dir", keydir, "--show", "late"], check=True,
                          capture_output=True, text=True).stdout.strip()
    hdr = {"Authorization": f"Bearer {late}"}
    assert stack.get("/v1/models", client=None, headers=hdr).status_code == 401
    with Traffic(stack) as t:
        time.sleep(0.3)
        os.kill(stack.nginx_pid(), signal.SIGHUP)
        time.sleep(1.5)
    assert t.results and all(s == 200 for s in t.results), [s for s in t.results if s != 200]
    r = stack.get("/v1/models", client=None, headers=hdr)
    assert r.status_code == 200, r.text


def test_killed_worker_is_restarted(stack):
    before = stack.worker_pids()
    assert len(before) == 2
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        now = stack.worker_pids()
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.05)
    h = stack.wait_health(timeout=30, want=lambda h: workers_state(h)[0] == workers_state(h)[1])
    assert workers_state(h) == (2, 2)
    after = stack.worker_pids()
    assert victim not in after and len(after) == 2, (before, after)
    assert time.monotonic() - t0 < 30
    r = stack.chat(max_tokens=2)
    assert r.status_code == 200, r.text
    log = stack.log("edgegate.log")
    assert str(victim) in log, "the worker's death was not logged"


def test_up_refuses_a_second_start(stack):
    r = subprocess.run([os.path.join(ROOT, "scripts", "up"), "--dir", stack.dir],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "already runs" in r.stderr
    assert stack.session.get(stack.url + "/health", timeout=10).status_code == 200


def test_pool_gone_gives_json_502(limits_stack):
    # Uses the limits stack, whose tests ran earlier: its pool is stopped here
    # and the session teardown (scripts/down) copes with that.
    s = limits_stack
    pid = s.pool_pid()
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 20
    while time.monotonic() < end and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "pool did not stop on SIGTERM"
    assert not os.path.exists(os.path.join(s.dir, "run", "edgegate.sock")), "socket left behind"
    for r in (s.session.get(s.url + "/health", timeout=10), s.get("/v1/models")):
        err = assert_api_error(r, 502, code="pool_unavailable")
        assert err["type"] == "server_error"
        assert r.headers.get("X-Request-Id")
