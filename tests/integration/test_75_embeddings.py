"""POST /v1/embeddings (issue 6): OpenAI-compatible embeddings from a
BERT-family model (a random-weight bert-tiny made by scripts/make-model),
under the budget and the response cache; chat refuses the embedding model
and embeddings refuse the chat model."""

import base64
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import assert_api_error
from test_50_node_openai import node_dir  # noqa: F401  (the npm client fixture)

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Edge boxes answer locally.", "x"]


def embed(st, body, client="default", headers=None):
    body = {"model": "embed", **body}
    return st.post("/v1/embeddings", body, client=client, headers=headers or {})


def vectors(r):
    assert r.status_code == 200, r.text[:500]
    doc = r.json()
    assert doc["object"] == "list" and doc["model"] == "embed"
    assert [d["index"] for d in doc["data"]] == list(range(len(doc["data"])))
    assert all(d["object"] == "embedding" for d in doc["data"])
    u = doc["usage"]
    assert u["prompt_tokens"] == u["total_tokens"] >= 2 * len(doc["data"])
    return [np.array(d["embedding"], dtype=np.float32) for d in doc["data"]]


def nocache():
    return {"Cache-Control": "no-cache"}


def test_string_input(embed_stack):
    r = embed(embed_stack, {"input": TEXTS[0]}, headers=nocache())
    (v,) = vectors(r)
    assert v.shape == (128,)
    assert abs(float(np.linalg.norm(v)) - 1) < 1e-5
    assert r.headers["X-Cache"] == "BYPASS"


def test_array_input_matches_single_inputs(embed_stack):
    vs = vectors(embed(embed_stack, {"input": TEXTS + [TEXTS[0]]}, headers=nocache()))
    assert len(vs) == 4
    assert np.array_equal(vs[0], vs[3])          # same text, same vector
    assert float(vs[0] @ vs[1]) < 0.9999         # different texts differ
    for i, t in enumerate(TEXTS):
        (one,) = vectors(embed(embed_stack, {"input": t}, headers=nocache()))
        assert float(one @ vs[i]) > 0.99999


def test_same_text_same_vector_across_requests(embed_stack):
    a = vectors(embed(embed_stack, {"input": TEXTS[1]}, headers=nocache()))[0]
    b = vectors(embed(embed_stack, {"input": TEXTS[1]}, headers=nocache()))[0]
    assert np.array_equal(a, b)


def test_base64_decodes_to_the_float_result(embed_stack):
    flt = vectors(embed(embed_stack, {"input": TEXTS, "encoding_format": "float"}))
    r = embed(embed_stack, {"input": TEXTS, "encoding_format": "base64"})
    assert r.status_code == 200, r.text[:300]
    data = r.json()["data"]
    for d, f in zip(data, flt):
        v = np.frombuffer(base64.b64decode(d["embedding"], validate=True), dtype="<f4")
        assert np.array_equal(v, f)   # %.9g floats read back exactly


def test_dimensions_equal_to_the_model_is_accepted(embed_stack):
    (v,) = vectors(embed(embed_stack, {"input": "a", "dimensions": 128, "user": "u1"}))
    assert v.shape == (128,)


@pytest.mark.parametrize("body, param", [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": ["a", ""]}, "input"),
    ({"input": [1, 2, 3]}, "input"),
    ({"input": [[1, 2], [3]]}, "input"),
    ({"input": 5}, "input"),
    ({"input": {"text": "a"}}, "input"),
    ({"input": None}, "input"),
    ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "a", "encoding_format": 1}, "encoding_format"),
    ({"input": "a", "dimensions": 64}, "dimensions"),
    ({"input": "a", "dimensions": "128"}, "dimensions"),
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "temperature": 0}, "temperature"),
    ({"input": "a", "model": 7}, "model"),
    ({"input": "a", "model": None}, "model"),
])
def test_bad_requests(embed_stack, body, param):
    assert_api_error(embed(embed_stack, body), 400, param=param)


def test_unknown_and_wrong_kind_of_model(embed_stack):
    assert_api_error(embed(embed_stack, {"input": "a", "model": "nope"}), 400, "model",
                     "model_not_found")
    err = assert_api_error(embed(embed_stack, {"input": "a", "model": embed_stack.model}), 400,
                           "model")
    assert "does not support embeddings" in err["message"]
    # and chat completions refuse the embedding model
    r = embed_stack.post("/v1/chat/completions",
                         {"model": "embed", "messages": [{"role": "user", "content": "hi"}]})
    err = assert_api_error(r, 400, "model")
    assert "embedding model" in err["message"]
    # nor can QA answer with it
    r = embed_stack.post("/v1/qa", {"model": "embed", "question": "What is a valve?"})
    err = assert_api_error(r, 400, "model")
    assert "embedding model" in err["message"]
    types = {m["id"]: m.get("type") for m in embed_stack.get("/v1/models").json()["data"]}
    assert types == {embed_stack.model: "chat", "embed": "embedding"}


def test_too_many_inputs(embed_stack):
    err = assert_api_error(embed(embed_stack, {"input": ["a"] * 257}), 400, "input")
    assert "at most 256" in err["message"]


def test_too_long_input(embed_stack):
    text = " ".join(["robot"] * 600)    # > 512 positions
    err = assert_api_error(embed(embed_stack, {"input": ["short", text]}), 400, "input",
                           "context_length_exceeded")
    assert "input[1]" in err["message"]


def test_not_json_method_and_key(embed_stack):
    r = embed_stack.post("/v1/embeddings", raw='{"model":"embed","input":')
    assert_api_error(r, 400, code="invalid_json")
    r = embed_stack.get("/v1/embeddings")
    assert r.status_code == 405
    r = embed_stack.post("/v1/embeddings", {"model": "embed", "input": "a"}, client=None)
    assert r.status_code == 401


def test_budget_headers_and_charge(embed_stack):
    body = {"input": ["budget check one", "budget check two"]}
    r1 = embed(embed_stack, body, headers=nocache())
    used = r1.json()["usage"]["prompt_tokens"]
    left1 = int(r1.headers["x-ratelimit-remaining-tokens"])
    assert int(r1.headers["x-ratelimit-limit-tokens"]) == 1000000
    r2 = embed(embed_stack, body, headers=nocache())
    assert int(r2.headers["x-ratelimit-remaining-tokens"]) == left1 - used
    # a client with 20 tokens a day: a long input does not fit
    long = " ".join(["robot"] * 30)
    r = embed(embed_stack, {"input": long}, client="poor")
    assert_api_error(r, 429, code="insufficient_quota")
    assert "Retry-After" in r.headers
    ok = embed(embed_stack, {"input": "hi"}, client="poor")
    assert ok.status_code == 200, ok.text
    assert int(ok.headers["x-ratelimit-limit-tokens"]) == 20


def test_cache_hit(embed_stack):
    body = {"input": ["cache me", "and me"], "encoding_format": "float"}
    r1 = embed(embed_stack, body)
    assert r1.status_code == 200 and r1.headers["X-Cache"] == "MISS"
    r2 = embed(embed_stack, body)
    assert r2.status_code == 200 and r2.headers["X-Cache"] == "HIT"
    assert r2.content == r1.content
    assert r2.headers["X-Cache-Key"] == r1.headers["X-Cache-Key"]
    r3 = embed(embed_stack, {**body, "encoding_format": "base64"})
    assert r3.headers["X-Cache"] == "MISS"
    r4 = embed(embed_stack, {**body, "input": ["and me", "cache me"]})
    assert r4.headers["X-Cache"] == "MISS"
    assert embed(embed_stack, body, headers=nocache()).headers["X-Cache"] == "BYPASS"


def test_openai_npm_client(embed_stack, node_dir):  # noqa: F811
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "openai_embed.mjs")
    shutil.copy(src, node_dir)
    env = dict(os.environ, EDGEGATE_URL=embed_stack.url, EDGEGATE_KEY=embed_stack.keys["node"],
               EDGEGATE_EMBED_MODEL="embed", NODE_EXTRA_CA_CERTS=embed_stack.ca)
    env.pop("NODE_TLS_REJECT_UNAUTHORIZED", None)
    r = subprocess.run(["node", os.path.join(node_dir, "openai_embed.mjs")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"node failed:\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["object"] == "list" and out["model"] == "embed"
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] > 0
    d, f = out["default"], out["float"]
    assert [x["index"] for x in d] == [0, 1, 2] and len(d[0]["embedding"]) == 128
    # the client's base64 decoding gives the float answer
    for a, b in zip(d, f):
        assert np.allclose(a["embedding"], b["embedding"], rtol=0, atol=1e-7)
    assert d[0]["embedding"] == d[1]["embedding"]
    assert out["bad"] == {"status": 400, "param": "input"}
