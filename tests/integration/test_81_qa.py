"""Issue 6, answering: POST /v1/qa through nginx. Documents go in through
the admin API (POST /admin/kb/documents); a question whose answer is in one
document gets that document as its first source (streamed: the sources
event comes first); a question with nothing relevant gets the honest
message without a token charged; bad questions are 400s; answers are
charged to the budget (429 insufficient_quota when it cannot hold them),
cached (MISS then HIT) with the knowledge base version in the key, missed
again after a re-ingest, and purged by {"kb_version_below": N} (admin API
and operator command); in a small context the lowest-ranked sources are
dropped."""

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import BUILD, assert_api_error, parse_sse, run_stack_conf, _run_stack

NOT_FOUND = "I could not find this in the knowledge base."

VALVE = ("# Zorblax valve\n\n"
         "The zorblax valve is calibrated with the quartermaster wrench: turn the "
         "calibration screw until the zorblax gauge reads forty-two. Recalibrate the "
         "zorblax valve every seventeen days.\n")
PENGUIN = ("# Penguins\n\n"
           "Emperor penguins huddle together through the antarctic winter; the males "
           "keep the eggs warm on their feet for about two months.\n")
BREAD = ("# Sourdough\n\n"
         "A sourdough starter is fed with flour and water; the dough rises slowly and "
         "is baked in a hot oven with steam.\n")


@pytest.fixture(scope="module")
def qa_stack(request):
    yield from run_stack_conf(
        request, "qa",
        ["--workers", "2", "--rate-client", "1000r/s", "--burst-client", "2000",
         "--rate-ip", "2000r/s", "--burst-ip", "4000", "--max-tokens-cap", "512"],
        clients=("default", "other", "poor"),
        extra_conf='clients = ( { id = "poor"; tokens_per_day = 100; } );\n'
                   'qa = { top_k = 3; max_tokens = 12; };')


def ingest(st, doc_id, content, title=None, timeout=60):
    """Adds a document through the knowledge base's admin API; returns its
    JSON answer. Retries while the endpoint is not there yet (404)."""
    body = {"id": doc_id, "content": content}
    if title:
        body["title"] = title
    end = time.monotonic() + timeout
    while True:
        r = st.post("/admin/kb/documents", body, client="admin")
        if r.status_code != 404 or time.monotonic() > end:
            break
        time.sleep(1)
    assert r.status_code in (200, 201), r.text
    return r.json()


def cli(st, *args):
    """The pool binary's operator commands on the stack's config."""
    r = subprocess.run([os.path.join(BUILD, "edgegate-fcgi"), "-c",
                        os.path.join(st.dir, "edgegate.conf"), *args],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def kb_version(st):
    r = st.get("/admin/kb", client="admin")
    assert r.status_code == 200, r.text
    return r.json()["version"]


@pytest.fixture(scope="module")
def kb(qa_stack):
    st = qa_stack
    for doc_id, text in (("valve.md", VALVE), ("penguins.md", PENGUIN), ("bread.md", BREAD)):
        ingest(st, doc_id, text)
    return st


def ask(st, question, client="default", headers=None, **kw):
    kw.setdefault("max_tokens", 8)
    body = {"question": question, **kw}
    return st.post("/v1/qa", body, client=client, headers=headers or {},
                   stream=bool(kw.get("stream")))


def used(st, client="default"):
    r = st.get(f"/admin/budgets/{client}", client="admin")
    assert r.status_code == 200, r.text
    return r.json()["day"]["used"]


def valve_question():
    # A fresh token keeps each test's question (and cache key) its own; it
    # matches no document, so retrieval is unchanged.
    return f"How is the zorblax valve calibrated? qz{uuid.uuid4().hex[:10]}"


def check_answer(b, st):
    assert b["object"] == "qa"
    assert b["id"].startswith("qa-")
    assert b["model"] == st.model
    assert isinstance(b["answer"], str)
    assert isinstance(b["kb_version"], int) and b["kb_version"] >= 1
    u = b["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    for s in b["sources"]:
        assert set(s) >= {"document", "title", "chunk", "score", "text"}
        assert isinstance(s["chunk"], int) and isinstance(s["score"], (int, float))


def test_answer_cites_the_right_document_first(kb):
    st = kb
    r = ask(st, valve_question())
    assert r.status_code == 200, r.text
    b = r.json()
    check_answer(b, st)
    src = b["sources"]
    assert src and src[0]["document"] == "valve.md", src
    assert "zorblax" in src[0]["text"]
    assert all(s["document"] != "penguins.md" for s in src)
    scores = [s["score"] for s in src]
    assert scores == sorted(scores, reverse=True)
    assert b["usage"]["prompt_tokens"] > 0 and b["finish_reason"] in ("stop", "length")
    assert r.headers["X-Cache"] == "MISS"
    assert "x-ratelimit-remaining-tokens" in r.headers
    m = st.get("/metrics", client=None).text
    assert 'edgegate_requests_total{endpoint="qa",status="200"}' in m


def test_stream_sends_sources_first(kb):
    st = kb
    r = ask(st, valve_question(), stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    chunks, done = parse_sse(r)
    assert done
    assert chunks[0]["object"] == "qa.sources", chunks[0]
    assert chunks[0]["sources"][0]["document"] == "valve.md"
    assert isinstance(chunks[0]["kb_version"], int)
    deltas = chunks[1:-1]
    assert all(c["object"] == "qa.delta" and isinstance(c["delta"], str) for c in deltas)
    last = chunks[-1]
    assert last["object"] == "qa.done"
    assert last["finish_reason"] in ("stop", "length")
    assert last["usage"]["completion_tokens"] >= len([d for d in deltas if d["delta"]])
    assert len({c["id"] for c in chunks}) == 1


def test_nothing_relevant_is_said_honestly_and_free(kb):
    st = kb
    before = used(st)
    q = f"Xylophone quasar metallurgy? nq{uuid.uuid4().hex[:10]}"
    r = ask(st, q, max_tokens=64)
    assert r.status_code == 200, r.text
    b = r.json()
    check_answer(b, st)
    assert b["answer"] == NOT_FOUND
    assert b["sources"] == []
    assert b["usage"]["completion_tokens"] == 0 and b["usage"]["prompt_tokens"] == 0
    assert used(st) == before
    # Streamed the same way: an empty sources event first.
    r = ask(st, q + " again", stream=True)
    chunks, done = parse_sse(r)
    assert done and chunks[0]["object"] == "qa.sources" and chunks[0]["sources"] == []
    assert "".join(c["delta"] for c in chunks if c["object"] == "qa.delta") == NOT_FOUND
    assert chunks[-1]["usage"]["total_tokens"] == 0
    assert used(st) == before


def test_bad_questions_are_400(kb):
    st = kb
    assert_api_error(ask(st, ""), 400, param="question", code="invalid_value")
    assert_api_error(ask(st, "  \n\t "), 400, param="question", code="invalid_value")
    assert_api_error(ask(st, "zorblax " * 300), 400, param="question",
                     code="string_above_max_length")
    assert_api_error(st.post("/v1/qa", {"top_k": 3}), 400, param="question",
                     code="missing_required_parameter")
    assert_api_error(ask(st, "zorblax", top_k=0), 400, param="top_k")
    assert_api_error(ask(st, "zorblax", top_k="3"), 400, param="top_k", code="invalid_type")
    assert_api_error(ask(st, "zorblax", temperature=0.5), 400, param="temperature",
                     code="unknown_parameter")
    assert_api_error(ask(st, "zorblax", model="nope"), 400, param="model")
    assert_api_error(st.post("/v1/qa", raw="{not json"), 400, code="invalid_json")
    r = st.get("/v1/qa")
    assert r.status_code == 405


def test_answers_are_charged_to_the_budget(kb):
    st = kb
    before = used(st, "other")
    r = ask(st, valve_question(), client="other", headers={"Cache-Control": "no-cache"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Cache"] == "BYPASS"
    u = r.json()["usage"]
    assert u["prompt_tokens"] > 0
    assert used(st, "other") == before + u["total_tokens"]
    remaining = int(r.headers["x-ratelimit-remaining-tokens"])
    assert remaining == int(r.headers["x-ratelimit-limit-tokens"]) - used(st, "other")


def test_config_defaults_and_quota_exhaustion(kb):
    st = kb
    # qa.top_k and qa.max_tokens from the config when the request names none.
    r = st.post("/v1/qa", {"question": valve_question()})
    assert r.status_code == 200, r.text
    b = r.json()
    assert 1 <= len(b["sources"]) <= 3
    assert b["usage"]["completion_tokens"] <= 12
    # A client whose budget cannot hold the grounded prompt: 429 before any
    # generation, with the quota headers, and nothing charged.
    r = ask(st, valve_question(), client="poor")
    assert_api_error(r, 429, code="insufficient_quota")
    assert r.json()["error"]["type"] == "insufficient_quota"
    assert int(r.headers["x-ratelimit-limit-tokens"]) == 100
    assert used(st, "poor") == 0
    # ... while "not in the knowledge base" costs nothing and still answers.
    r = ask(st, f"Xylophone quasar? nq{uuid.uuid4().hex[:10]}", client="poor")
    assert r.status_code == 200 and r.json()["answer"] == NOT_FOUND


def test_cache_miss_then_hit(kb):
    st = kb
    q = valve_question()
    r1 = ask(st, q)
    assert r1.status_code == 200 and r1.headers["X-Cache"] == "MISS", r1.text
    before = used(st)
    r2 = ask(st, q)
    assert r2.status_code == 200 and r2.headers["X-Cache"] == "HIT", r2.text
    a, b = r1.json(), r2.json()
    assert a["answer"] == b["answer"] and a["sources"] == b["sources"]
    assert a["kb_version"] == b["kb_version"] and a["id"] != b["id"]
    assert b["usage"]["prompt_tokens_details"]["cached_tokens"] == b["usage"]["prompt_tokens"]
    assert r1.headers["X-Cache-Key"] == r2.headers["X-Cache-Key"]
    assert used(st) == before   # hits are free by default
    # The hit streams too, sources first.
    r3 = ask(st, q, stream=True)
    assert r3.headers["X-Cache"] == "HIT"
    chunks, done = parse_sse(r3)
    assert done and chunks[0]["sources"] == a["sources"]
    assert "".join(c["delta"] for c in chunks if c["object"] == "qa.delta") == a["answer"]
    # Another top_k is another answer.
    r4 = ask(st, q, top_k=1)
    assert r4.headers["X-Cache"] == "MISS"
    assert len(r4.json()["sources"]) == 1


def test_reingest_misses_and_purge_by_kb_version(kb):
    st = kb
    q = valve_question()
    r1 = ask(st, q)
    assert r1.headers["X-Cache"] == "MISS"
    v1 = r1.json()["kb_version"]
    assert ask(st, q).headers["X-Cache"] == "HIT"
    # A changed document: a new version, so the same question misses.
    ingest(st, "bread.md", BREAD + "\nRye bread needs a longer proof.\n")
    r2 = ask(st, q)
    assert r2.status_code == 200, r2.text
    assert r2.headers["X-Cache"] == "MISS"
    v2 = r2.json()["kb_version"]
    assert v2 > v1 and v2 == kb_version(st)
    assert r2.headers["X-Cache-Key"] != r1.headers["X-Cache-Key"]
    # Answers of versions below v2 go; the v2 answer and chat entries stay.
    chat_body = {"model": st.model, "temperature": 0, "max_tokens": 4,
                 "messages": [{"role": "user", "content": f"qa purge {uuid.uuid4().hex}"}]}
    assert st.post("/v1/chat/completions", chat_body).headers["X-Cache"] == "MISS"
    r = st.post("/admin/cache/purge", {"kb_version_below": v2}, client="admin")
    assert r.status_code == 200, r.text
    assert r.json()["purged"] >= 1
    assert ask(st, q).headers["X-Cache"] == "HIT"
    assert st.post("/v1/chat/completions", chat_body).headers["X-Cache"] == "HIT"
    # Nothing older than v2 is left to purge.
    r = st.post("/admin/cache/purge", {"kb_version_below": v2}, client="admin")
    assert r.json()["purged"] == 0
    # The operator command takes the same selector: v2's answer goes too.
    rc, out, err = cli(st, "--cache-purge", json.dumps({"kb_version_below": v2 + 1}))
    assert rc == 0, err
    assert json.loads(out)["purged"] >= 1
    assert ask(st, q).headers["X-Cache"] == "MISS"
    rc, out, err = cli(st, "--cache-purge", '{"kb_version_below":"x"}')
    assert rc == 1 and "kb_version_below" in err
    assert_api_error(st.post("/admin/cache/purge", {"kb_version_below": -1}, client="admin"),
                     400, param="kb_version_below")


@pytest.fixture(scope="module")
def small_ctx_stack(request):
    """A 640-token context: four long sources cannot all fit."""
    yield from _run_stack(
        request, "qa-small",
        ["--workers", "1", "--n-ctx", "640", "--rate-client", "1000r/s",
         "--burst-client", "2000", "--rate-ip", "2000r/s", "--burst-ip", "4000"])


def test_lowest_ranked_sources_are_dropped_to_fit_the_context(small_ctx_stack):
    st = small_ctx_stack
    filler = ("The zorblax gauge has a brass housing, a glass face and a red needle that "
              "moves slowly when the pressure in the line changes during the day. ")
    for i in range(4):
        ingest(st, f"gauge{i}.md", f"# Gauge {i}\n\n" + "zorblax " * (4 - i) + filler * 4)
    # Other topics, so that the gauge's words are rare enough to score.
    for i, topic in enumerate(("apples", "rivers", "violins", "glaciers", "tulips",
                               "comets", "marble", "ferries")):
        ingest(st, f"other{i}.md", f"# {topic}\n\nNotes about {topic} and {topic} care.\n")
    q = "What does the zorblax gauge look like?"
    r = st.get("/admin/kb/search", client="admin", params={"q": q, "top_k": 4})
    assert r.status_code == 200, r.text
    ranked = r.json()["data"]
    assert len(ranked) == 4
    r = ask(st, q, top_k=4, max_tokens=64)
    assert r.status_code == 200, r.text
    b = r.json()
    src = b["sources"]
    print(f"\nn_ctx 640, top_k 4, max_tokens 64: {len(src)} sources kept, "
          f"prompt {b['usage']['prompt_tokens']} tokens")
    assert 1 <= len(src) < 4, [s["document"] for s in src]
    # The best ones stay, in rank order.
    top = [h["document"] for h in ranked[:len(src)]]
    assert [s["document"] for s in src] == top
    if len(src) > 1:
        assert b["usage"]["prompt_tokens"] + 64 <= 640, b["usage"]


def test_deadline_cuts_the_answer_like_chat(deadline_stack):
    st = deadline_stack
    ingest(st, "valve.md", VALVE)
    for i, topic in enumerate(("apples", "rivers", "violins")):
        ingest(st, f"other{i}.md", f"# {topic}\n\nNotes about {topic}.\n")
    q = valve_question()
    r = ask(st, q, max_tokens=2000)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["sources"] and b["sources"][0]["document"] == "valve.md"
    assert b["finish_reason"] == "length"
    assert b["edgegate"]["deadline_hit"] is True
    assert r.headers.get("X-Edgegate-Deadline") == "hit"
    # A cut answer is not the answer: never cached.
    assert ask(st, q, max_tokens=2000).headers["X-Cache"] == "MISS"
