"""The OpenAI-compatible API through nginx and TLS: health, models, chat."""

import json
import time

from conftest import parse_sse


def test_health_needs_no_key(stack):
    r = stack.session.get(stack.url + "/health", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    h = r.json()
    assert h["status"] == "ok", h
    assert "npu_temp_c" in h and (h["npu_temp_c"] is None or isinstance(h["npu_temp_c"], (int, float)))
    assert isinstance(h["queue_depth"], int) and h["queue_depth"] >= 0
    text = json.dumps(h)
    assert "workers" in text and "model" in text, h


def test_models_lists_the_configured_model(stack):
    r = stack.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == [stack.model]
    assert body["data"][0]["object"] == "model"


def test_request_id_on_every_response(stack):
    ids = set()
    for r in (stack.get("/v1/models"), stack.get("/v1/models", client=None),
              stack.session.get(stack.url + "/health", timeout=10),
              stack.session.get(stack.url + "/no/such/path", timeout=10),
              stack.chat(max_tokens=1)):
        rid = r.headers.get("X-Request-Id", "")
        assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid), (r.status_code, r.headers)
        ids.add(rid)
    assert len(ids) == 5, "request ids must differ"


def test_request_id_reaches_the_pool_log(stack):
    r = stack.chat(max_tokens=1)
    assert r.status_code == 200, r.text
    rid = r.headers["X-Request-Id"]
    for _ in range(50):
        if rid in stack.log("edgegate.log"):
            break
        time.sleep(0.1)
    lines = [line for line in stack.log("edgegate.log").splitlines() if rid in line]
    assert lines, "the pool did not log the request id"
    entry = json.loads(lines[-1])   # one JSON object per line
    assert entry.get("method") == "POST" and entry.get("path") == "/v1/chat/completions", entry
    assert entry.get("client") == "default", entry


def test_chat_completion(stack):
    r = stack.chat([{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Say something."}],
                   max_tokens=8, temperature=0, seed=1)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    c = r.json()
    assert c["object"] == "chat.completion"
    assert isinstance(c["id"], str) and c["id"].startswith("chatcmpl-")
    assert isinstance(c["created"], int) and c["created"] > 1_600_000_000
    assert c["model"] == stack.model
    assert len(c["choices"]) == 1
    ch = c["choices"][0]
    assert ch["index"] == 0
    assert ch["message"]["role"] == "assistant"
    assert isinstance(ch["message"]["content"], str)
    assert ch["finish_reason"] in ("stop", "length")
    u = c["usage"]
    assert u["prompt_tokens"] > 0
    assert 1 <= u["completion_tokens"] <= 8
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    if ch["finish_reason"] == "length":
        assert u["completion_tokens"] == 8


def test_usage_counts_are_real(stack):
    short = stack.chat([{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)
    long = stack.chat([{"role": "user", "content": "Hi " + "and then some more words " * 20}],
                      max_tokens=5, temperature=0)
    assert short.status_code == 200 and long.status_code == 200, (short.text, long.text)
    su, lu = short.json()["usage"], long.json()["usage"]
    # 20 repetitions of five words add at least 20 tokens with any tokenizer.
    assert lu["prompt_tokens"] >= su["prompt_tokens"] + 20, (su, lu)
    assert su["completion_tokens"] <= 2 and lu["completion_tokens"] <= 5


def test_default_max_tokens_is_16(stack):
    r = stack.chat(temperature=0)
    assert r.status_code == 200, r.text
    c = r.json()
    assert 1 <= c["usage"]["completion_tokens"] <= 16
    if c["choices"][0]["finish_reason"] == "length":
        assert c["usage"]["completion_tokens"] == 16


def test_max_completion_tokens_and_greedy_is_deterministic(stack):
    a = stack.chat(max_completion_tokens=6, temperature=0)
    b = stack.chat(max_completion_tokens=6, temperature=0)
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert a.json()["usage"]["completion_tokens"] <= 6
    assert a.json()["choices"][0]["message"]["content"] == b.json()["choices"][0]["message"]["content"]


def test_text_part_content(stack):
    r = stack.chat([{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                                 {"type": "text", "text": " world"}]}],
                   max_tokens=2)
    assert r.status_code == 200, r.text


def test_streaming_chat(stack):
    body_fields = dict(max_tokens=8, temperature=0, seed=3)
    r = stack.chat(stream=True, stream_options={"include_usage": True}, **body_fields)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    chunks, done = parse_sse(r)
    assert done, "stream did not end with data: [DONE]"
    assert chunks, "no chunks"
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == stack.model
    # The usage chunk comes last, with no choices.
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [], usage_chunk
    u = usage_chunk["usage"]
    assert u["prompt_tokens"] > 0 and 1 <= u["completion_tokens"] <= 8
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    choice_chunks = [c for c in chunks if c["choices"]]
    assert choice_chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    assert finishes[-1] in ("stop", "length")
    assert all(f is None for f in finishes[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in choice_chunks)

    # Same request without streaming: same greedy text, same usage.
    plain = stack.chat(**body_fields)
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"] == text
    # (The second one may be a response-cache hit, issue 4: then its
    # prompt_tokens_details.cached_tokens differs, the counts do not.)
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert {k: plain.json()["usage"][k] for k in counts} == {k: u[k] for k in counts}


def test_streaming_without_usage_has_no_usage_chunk(stack):
    r = stack.chat(stream=True, max_tokens=3)
    assert r.status_code == 200, r.text
    chunks, done = parse_sse(r)
    assert done
    assert all(c["choices"] for c in chunks)
    assert all(c.get("usage") is None for c in chunks)
