"""Issue 4, the response cache through nginx: a deterministic request misses
then hits (same answer, usage.prompt_tokens_details.cached_tokens, SSE when
asked), Cache-Control: no-cache bypasses, non-deterministic requests are not
cached, the key covers sampling parameters and the client, and the admin
purge works by each selector with counts, visible in the stats."""

import json
import time
import uuid

import pytest

from conftest import assert_api_error, parse_sse, _run_stack


@pytest.fixture(scope="module")
def cache_stack(request):
    yield from _run_stack(
        request, "cache",
        ["--workers", "2", "--rate-client", "1000r/s", "--burst-client", "2000",
         "--rate-ip", "2000r/s", "--burst-ip", "4000"],
        clients=("default", "other"))


def msgs(tag=None):
    return [{"role": "user", "content": f"cache test {tag or uuid.uuid4().hex}"}]


def stats(st):
    r = st.get("/admin/cache/stats", client="admin")
    assert r.status_code == 200, r.text
    return r.json()


def purge(st, sel):
    r = st.post("/admin/cache/purge", sel, client="admin")
    assert r.status_code == 200, r.text
    return r.json()["purged"]


def chat(st, m, client="default", headers=None, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 8)
    body = {"model": st.model, "messages": m, **kw}
    return st.post("/v1/chat/completions", body, client=client, headers=headers or {},
                   stream=bool(kw.get("stream")))


def test_miss_then_hit_same_answer(cache_stack):
    st = cache_stack
    m = msgs()
    s0 = stats(st)
    r1 = chat(st, m)
    assert r1.status_code == 200, r1.text
    assert r1.headers["X-Cache"] == "MISS"
    r2 = chat(st, m)
    assert r2.status_code == 200, r2.text
    assert r2.headers["X-Cache"] == "HIT"
    a, b = r1.json(), r2.json()
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["choices"][0]["finish_reason"] == b["choices"][0]["finish_reason"]
    assert a["id"] != b["id"]
    assert a["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert b["usage"]["prompt_tokens_details"]["cached_tokens"] == b["usage"]["prompt_tokens"]
    assert a["usage"]["completion_tokens"] == b["usage"]["completion_tokens"]
    assert r1.headers["X-Cache-Key"] == r2.headers["X-Cache-Key"]
    s1 = stats(st)
    assert s1["hits"] == s0["hits"] + 1 and s1["misses"] == s0["misses"] + 1
    assert s1["puts"] == s0["puts"] + 1 and s1["entries"] >= 1


def chat_200s(st):
    text = st.session.get(st.url + "/metrics", timeout=10).text
    line = 'edgegate_requests_total{endpoint="chat",status="200"} '
    return sum(int(x[len(line):]) for x in text.splitlines() if x.startswith(line))


def test_each_request_is_counted_and_logged_once(cache_stack):
    """Chat goes to the status socket first and, unless it is a hit, on to
    the main socket: still one request in the metrics and in the log."""
    st = cache_stack
    before = chat_200s(st)
    m = msgs()
    ids = [chat(st, m).headers["X-Request-Id"] for _ in range(2)]   # a miss, then a hit
    assert chat_200s(st) == before + 2
    for rid in ids:
        for _ in range(50):
            lines = [x for x in st.log("edgegate.log").splitlines() if rid in x]
            if lines:
                break
            time.sleep(0.1)
        assert len(lines) == 1, lines


def test_hit_streamed_as_sse(cache_stack):
    st = cache_stack
    m = msgs()
    r1 = chat(st, m)
    text = r1.json()["choices"][0]["message"]["content"]
    r2 = chat(st, m, stream=True, stream_options={"include_usage": True})
    assert r2.status_code == 200
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.headers["Content-Type"].startswith("text/event-stream")
    chunks, done = parse_sse(r2)
    assert done
    got = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert got == text
    fin = [c["choices"][0]["finish_reason"] for c in chunks
           if c["choices"] and c["choices"][0]["finish_reason"]]
    assert fin == [r1.json()["choices"][0]["finish_reason"]]
    u = chunks[-1]["usage"]
    assert u["prompt_tokens_details"]["cached_tokens"] == u["prompt_tokens"] > 0


def test_streamed_miss_is_cached_too(cache_stack):
    st = cache_stack
    m = msgs()
    r1 = chat(st, m, stream=True)
    assert r1.headers["X-Cache"] == "MISS"
    chunks, done = parse_sse(r1)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    r2 = chat(st, m)
    assert r2.headers["X-Cache"] == "HIT"
    assert r2.json()["choices"][0]["message"]["content"] == text


def test_no_cache_bypasses(cache_stack):
    st = cache_stack
    m = msgs()
    chat(st, m)
    s0 = stats(st)
    r = chat(st, m, headers={"Cache-Control": "no-cache"})
    assert r.status_code == 200 and r.headers["X-Cache"] == "BYPASS"
    s1 = stats(st)
    assert s1["hits"] == s0["hits"] and s1["puts"] == s0["puts"]
    assert chat(st, m).headers["X-Cache"] == "HIT"


def test_non_deterministic_not_cached(cache_stack):
    st = cache_stack
    m = msgs()
    s0 = stats(st)
    for _ in range(2):
        r = chat(st, m, temperature=0.9)
        assert r.status_code == 200 and r.headers["X-Cache"] == "BYPASS"
    assert stats(st)["puts"] == s0["puts"]
    # An explicit seed makes sampling reproducible: cached.
    assert chat(st, m, temperature=0.9, seed=7).headers["X-Cache"] == "MISS"
    assert chat(st, m, temperature=0.9, seed=7).headers["X-Cache"] == "HIT"
    assert chat(st, m, temperature=0.9, seed=8).headers["X-Cache"] == "MISS"


def test_key_covers_parameters_and_client(cache_stack):
    st = cache_stack
    m = msgs()
    assert chat(st, m).headers["X-Cache"] == "MISS"
    assert chat(st, m, max_tokens=9).headers["X-Cache"] == "MISS"
    assert chat(st, m, top_p=0.5).headers["X-Cache"] == "MISS"
    assert chat(st, m, stop=["zz"]).headers["X-Cache"] == "MISS"
    assert chat(st, m, presence_penalty=0.5).headers["X-Cache"] == "MISS"
    # Another client does not see this client's answers (cache.shared = false).
    assert chat(st, m, client="other").headers["X-Cache"] == "MISS"
    assert chat(st, m, client="other").headers["X-Cache"] == "HIT"
    # stream and user do not change the answer.
    r = chat(st, m, user="someone")
    assert r.headers["X-Cache"] == "HIT"


def test_purge_by_each_selector(cache_stack):
    st = cache_stack
    # key
    m = msgs()
    r = chat(st, m)
    key = r.headers["X-Cache-Key"]
    assert len(key) == 64
    assert purge(st, {"key": key}) == 1
    assert purge(st, {"key": key}) == 0
    assert chat(st, m).headers["X-Cache"] == "MISS"
    # client
    before = stats(st)["entries"]
    for _ in range(2):
        chat(st, msgs(), client="other")
    n_other = purge(st, {"client": "other"})
    assert n_other >= 2
    assert stats(st)["entries"] == before + 2 - n_other
    # older_than_s: nothing is an hour old yet
    assert purge(st, {"older_than_s": 3600}) == 0
    # model: everything here is for the one model
    chat(st, msgs())
    n = stats(st)["entries"]
    assert n >= 1
    assert purge(st, {"model": "no-such-model"}) == 0
    assert purge(st, {"model": st.model}) == n
    assert stats(st)["entries"] == 0
    # all
    for _ in range(3):
        chat(st, msgs())
    assert purge(st, {"all": True}) == 3
    s = stats(st)
    assert s["entries"] == 0 and s["bytes"] == 0


def test_purge_older_than(cache_stack):
    import time
    st = cache_stack
    m = msgs()
    chat(st, m)
    time.sleep(2.1)
    fresh = msgs()
    chat(st, fresh)
    assert purge(st, {"older_than_s": 1}) >= 1
    assert chat(st, m).headers["X-Cache"] == "MISS"
    assert chat(st, fresh).headers["X-Cache"] == "HIT"


def test_purge_rejects_bad_selectors(cache_stack):
    st = cache_stack
    for body in ({}, {"bogus": 1}, {"all": True, "model": "x"}, {"key": "abc"},
                 {"older_than_s": -1}):
        r = st.post("/admin/cache/purge", body, client="admin")
        assert_api_error(r, 400)
    r = st.post("/admin/cache/purge", None, client="admin", raw="{nope")
    assert_api_error(r, 400)
    assert st.get("/admin/cache/stats", client="default").status_code == 401


def test_metrics_show_cache_counters(cache_stack):
    st = cache_stack
    m = st.session.get(st.url + "/metrics", timeout=10).text
    for fam in ("edgegate_cache_hits_total", "edgegate_cache_misses_total",
                "edgegate_cache_evictions_total", "edgegate_cache_entries"):
        assert f"\n{fam} " in m, fam


def cli(st, *args):
    import os
    import subprocess
    from conftest import BUILD
    r = subprocess.run([os.path.join(BUILD, "edgegate-fcgi"), "-c",
                        os.path.join(st.dir, "edgegate.conf"), *args],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def test_operator_cli_while_the_pool_runs(cache_stack):
    st = cache_stack
    m = msgs()
    chat(st, m)
    rc, out, err = cli(st, "--cache-stats")
    assert rc == 0, err
    s = json.loads(out)
    assert s["entries"] >= 1 and s == {**s, "entries": stats(st)["entries"]}
    rc, out, err = cli(st, "--cache-purge", '{"client":"default"}')
    assert rc == 0, err
    assert json.loads(out)["purged"] >= 1
    assert chat(st, m).headers["X-Cache"] == "MISS"
    rc, out, err = cli(st, "--cache-purge", '{"everything":1}')
    assert rc == 1 and "selector" in err
    rc, out, err = cli(st, "--budget", "default")
    assert rc == 0, err
    b = json.loads(out)
    assert b["client"] == "default" and b["day"]["used"] > 0


@pytest.fixture(scope="module")
def small_cache_stack(request):
    from conftest import run_stack_conf
    yield from run_stack_conf(
        request, "smallcache",
        ["--workers", "1", "--rate-client", "1000r/s", "--burst-client", "2000",
         "--rate-ip", "2000r/s", "--burst-ip", "4000"],
        extra_conf="cache = { map_size_mb = 1; max_kb = 4; };")


def test_eviction_when_the_cache_is_small(small_cache_stack):
    """4 KiB of entries: older answers are evicted (LRU) instead of puts failing."""
    st = small_cache_stack
    first = msgs()
    chat(st, first, max_tokens=16)
    for _ in range(30):
        r = chat(st, msgs(), max_tokens=16)
        assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    s = stats(st)
    assert s["evictions"] > 0 and s["bytes"] <= 4096, s
    assert s["puts"] >= 31 and s["entries"] < 31, s
    assert chat(st, first, max_tokens=16).headers["X-Cache"] == "MISS"   # evicted
