"""Metrics after traffic, the generation deadline, and a client that leaves
in the middle of a stream."""

import re
import time

import pytest

from conftest import parse_sse

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$')


def parse_metrics(text):
    """Prometheus text -> ({family: type}, [(name, {label: value}, float)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def metrics(stack):
    r = stack.session.get(stack.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(r.text)


def total(samples, pred):
    return sum(v for n, lab, v in samples if pred(n, lab))


def family(types, *words, typ=None):
    """The one family whose name contains every word (and has type typ)."""
    found = [n for n, t in types.items() if all(w in n for w in words) and (typ is None or t == typ)]
    assert found, f"no {typ or ''} metric family named with {words}; families: {sorted(types)}"
    return found[0]


def test_metrics_families_after_traffic(stack):
    types, before = metrics(stack)
    req = family(types, "request", typ="counter")

    def chat_ok(n, lab):
        return n.startswith(req) and "chat" in " ".join(lab.values()) and "200" in lab.values()

    prompt_fam = family(types, "prompt", "token")
    gen_fam = [n for n in types if "token" in n and ("generat" in n or "completion" in n)]
    assert gen_fam, sorted(types)
    prompt_before = total(before, lambda n, lab: n.startswith(prompt_fam))
    gen_before = total(before, lambda n, lab: n.startswith(gen_fam[0]))

    usage = []
    for i in range(4):   # spread over both workers: the counts must add up
        r = stack.chat([{"role": "user", "content": f"metrics {i}"}], max_tokens=3)
        assert r.status_code == 200, r.text
        usage.append(r.json()["usage"])

    # A worker counts a request right after answering it: allow a moment.
    for _ in range(40):
        types, after = metrics(stack)
        if total(after, chat_ok) - total(before, chat_ok) >= 4:
            break
        time.sleep(0.05)
    assert total(after, chat_ok) - total(before, chat_ok) == 4, "chat requests by status"
    assert (total(after, lambda n, lab: n.startswith(prompt_fam)) - prompt_before
            == sum(u["prompt_tokens"] for u in usage))
    assert (total(after, lambda n, lab: n.startswith(gen_fam[0])) - gen_before
            == sum(u["completion_tokens"] for u in usage))

    hist = [n for n, t in types.items() if t == "histogram"]
    assert any("latency" in n or "duration" in n or "seconds" in n for n in hist), hist
    for h in hist:
        buckets = [(lab["le"], v) for n, lab, v in after if n == h + "_bucket"]
        assert any(le == "+Inf" for le, _ in buckets), h
        assert any(n == h + "_count" for n, _, _ in after) and any(n == h + "_sum" for n, _, _ in after)
    names = " ".join(types)
    # Queue wait is a histogram; cache hit/miss counters arrive with the
    # cache itself (issue 4), not as placeholders here.
    assert family(types, "queue", "wait", typ="histogram")
    assert "tokens_per_second" in names or "token_rate" in names or "tps" in names, sorted(types)


def test_no_deadline_header_when_in_time(stack):
    r = stack.chat(max_tokens=2)
    assert r.status_code == 200, r.text
    assert "X-Edgegate-Deadline" not in r.headers


def test_deadline_cuts_generation(deadline_stack):
    s = deadline_stack
    r = s.chat([{"role": "user", "content": "Tell me a long story."}], max_tokens=4000,
               temperature=0.8, seed=7)
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Edgegate-Deadline") == "hit", r.headers
    c = r.json()
    assert c["choices"][0]["finish_reason"] == "length"
    assert c["usage"]["completion_tokens"] < 4000
    time.sleep(1.2)
    log = [line for line in s.log("access.log").splitlines() if r.headers["X-Request-Id"] in line]
    assert log and '"deadline":"hit"' in log[0]


def test_deadline_cuts_a_stream(deadline_stack):
    s = deadline_stack
    r = s.chat([{"role": "user", "content": "Tell me a long story."}], max_tokens=4000,
               temperature=0.8, seed=7, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200, r.text
    chunks, done = parse_sse(r)
    assert done
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] < 4000


def test_client_disconnect_mid_stream(slow_stack):
    s = slow_stack   # one worker: it must stop generating to serve the next one
    # How fast does this machine generate? (64 tokens, nothing cuts them)
    t0 = time.monotonic()
    r = s.chat([{"role": "user", "content": "Go on and on."}], max_tokens=64,
               temperature=0.8, seed=11)
    per_token = (time.monotonic() - t0) / 64
    assert r.status_code == 200, r.text
    if r.json()["usage"]["completion_tokens"] < 64:
        pytest.skip("the model ended its answer early; cannot time a long stream")
    # Ask for ~8 s of generation (at most 4000 tokens, inside n_ctx 4096).
    n = min(4000, max(200, int(8.0 / per_token)))
    expected = n * per_token
    if expected < 3.0:
        pytest.skip(f"generation too fast to tell ({per_token * 1000:.2f} ms/token)")

    _, samples = metrics(s)
    disconnects = total(samples, lambda name, lab: "disconnect" in name)
    t_stream = time.monotonic()
    r = s.chat([{"role": "user", "content": "Go on and on."}], max_tokens=n,
               temperature=0.8, seed=11, stream=True)
    assert r.status_code == 200, r.text
    lines = r.iter_lines()
    got = 0
    for line in lines:
        if line.startswith(b"data: "):
            got += 1
            if got == 5:
                break
    t_cut = time.monotonic()
    r.close()   # the client leaves mid-stream
    # The chunks flowed as they were made (nothing buffered them to the end).
    assert t_cut - t_stream < expected / 2, (t_cut - t_stream, expected)

    t1 = time.monotonic()
    nxt = s.chat(max_tokens=1)
    waited = time.monotonic() - t1
    assert nxt.status_code == 200, nxt.text
    remaining = expected - (t_cut - t_stream)
    assert waited < min(2.0, remaining / 2), (
        f"next request waited {waited:.2f}s; the abandoned stream had ~{remaining:.1f}s to go")
    _, samples = metrics(s)
    assert total(samples, lambda name, lab: "disconnect" in name) == disconnects + 1
