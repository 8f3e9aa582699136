"""POST /v1/vision/detect through nginx (issue 5): raw JPEG/PNG bodies and
JSON data URIs, every kind of bad input, the response cache, the NPU shared
with a chat stream, and agreement with `edgegate-run --detect`.

The detector is yolov3-tiny with random weights (edgegate-make-weights), so
detections are meaningless but deterministic: what is checked is that the
gateway returns exactly what the core computes.
"""

import base64
import json
import os
import struct
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="python3-opencv is missing (scripts/deps)")

from conftest import BUILD, VISION_CFG, VISION_NAMES, assert_api_error, find_vision_weights

DOG = "/usr/share/darknet/data/dog.jpg"
PERSON = "/usr/share/darknet/data/person.jpg"
DETECT = "/v1/vision/detect"
NO_CACHE = {"Cache-Control": "no-cache"}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def post_image(st, data, ctype="image/jpeg", query="", headers=None, client="default"):
    h = {"Content-Type": ctype, **(headers or {})}
    return st.post(DETECT + query, raw=data, headers=h, client=client)


def run_tool(path):
    """The detections edgegate-run --detect prints for an image file."""
    weights, _ = find_vision_weights()
    r = subprocess.run([os.path.join(BUILD, "edgegate-run"), "--detect", VISION_CFG, weights,
                        path, "--names", VISION_NAMES, "-t", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def same_detections(got, want):
    """Equal up to the printed precision (thread counts may reorder sums)."""
    assert (got["width"], got["height"]) == (want["width"], want["height"])
    g, w = got["detections"], want["detections"]
    assert len(g) == len(w), (len(g), len(w))
    for a, b in zip(g, w):
        assert (a["class_id"], a["label"]) == (b["class_id"], b["label"]), (a, b)
        assert abs(a["confidence"] - b["confidence"]) <= 2e-4, (a, b)
        for k in "xywh":
            assert abs(a["box"][k] - b["box"][k]) <= 0.2, (a, b)


def png_bytes(rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def noise_png(seed, w=96, h=64):
    """A PNG no earlier request sent (a fresh cache key)."""
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def check_shape(body, model="yolov3-tiny"):
    assert set(body) == {"model", "width", "height", "detections", "timing"}, body.keys()
    assert body["model"] == model
    assert set(body["timing"]) == {"decode_ms", "inference_ms", "queue_ms"}
    for d in body["detections"]:
        assert set(d) == {"class_id", "label", "confidence", "box"}
        assert 0 <= d["class_id"] < 80 and isinstance(d["label"], str) and d["label"]
        assert 0 <= d["confidence"] <= 1
        assert set(d["box"]) == {"x", "y", "w", "h"}
        assert d["box"]["w"] >= 0 and d["box"]["h"] >= 0
    confs = [d["confidence"] for d in body["detections"]]
    assert confs == sorted(confs, reverse=True)


# ---- good requests --------------------------------------------------------

def test_models_lists_vision(vision_stack):
    r = vision_stack.get("/v1/models")
    assert r.status_code == 200
    types = {m["id"]: m["type"] for m in r.json()["data"]}
    assert list(types)[0] == vision_stack.model
    assert types[vision_stack.model] == "chat" and types["yolov3-tiny"] == "detection"
    h = vision_stack.session.get(vision_stack.url + "/health", timeout=10).json()
    assert {m["id"]: (m["type"], m["loaded"]) for m in h["models"]} == {
        vision_stack.model: ("chat", True), "yolov3-tiny": ("detection", True)}
    assert h["status"] == "ok"


def test_jpeg_matches_run_tool(vision_stack):
    r = post_image(vision_stack, read(DOG), headers=NO_CACHE)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers.get("X-Cache") == "BYPASS"
    body = r.json()
    check_shape(body)
    assert (body["width"], body["height"]) == (768, 576)
    assert body["detections"], "random weights still give detections at 0.25 on dog.jpg"
    assert body["timing"]["decode_ms"] > 0 and body["timing"]["inference_ms"] > 0
    same_detections(body, run_tool(DOG))
    with open(VISION_NAMES) as f:
        labels = [line.strip() for line in f]
    for d in body["detections"]:
        assert d["label"] == labels[d["class_id"]]


def test_person_matches_run_tool(vision_stack):
    r = post_image(vision_stack, read(PERSON), headers=NO_CACHE)
    assert r.status_code == 200, r.text[:500]
    same_detections(r.json(), run_tool(PERSON))
    # Quota headers as on chat answers; detections spend no tokens.
    left = r.headers["x-ratelimit-remaining-tokens"]
    assert r.headers["x-ratelimit-limit-tokens"] and r.headers["x-ratelimit-reset-tokens"]
    r2 = post_image(vision_stack, read(PERSON), headers=NO_CACHE)
    assert r2.headers["x-ratelimit-remaining-tokens"] == left


def test_png_and_data_uri(vision_stack, tmp_path):
    rgb = cv2.cvtColor(cv2.imread(DOG), cv2.COLOR_BGR2RGB)
    png = png_bytes(rgb[::2, ::2].copy())
    path = tmp_path / "dog-half.png"
    path.write_bytes(png)
    want = run_tool(str(path))
    r = post_image(vision_stack, png, ctype="image/png", headers=NO_CACHE)
    assert r.status_code == 200, r.text[:500]
    check_shape(r.json())
    same_detections(r.json(), want)
    # The same PNG as a data URI, with the options in JSON.
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    r2 = vision_stack.post(DETECT, {"image": uri, "model": "yolov3-tiny"}, headers=NO_CACHE)
    assert r2.status_code == 200, r2.text[:500]
    same_detections(r2.json(), want)
    # And a JPEG data URI.
    uri = "data:image/jpeg;base64," + base64.b64encode(read(DOG)).decode()
    r3 = vision_stack.post(DETECT, {"image": uri}, headers=NO_CACHE)
    assert r3.status_code == 200, r3.text[:500]
    same_detections(r3.json(), run_tool(DOG))


def test_options(vision_stack):
    full = post_image(vision_stack, read(DOG), headers=NO_CACHE).json()["detections"]
    top = full[0]["class_id"]
    # classes: only that class, in both request forms.
    r = post_image(vision_stack, read(DOG), query=f"?classes={top}", headers=NO_CACHE)
    assert r.status_code == 200, r.text[:500]
    dets = r.json()["detections"]
    assert dets and all(d["class_id"] == top for d in dets)
    # NMS is per class: the filter keeps that class's boxes (full is cut at 100).
    mine = [d for d in full if d["class_id"] == top]
    assert dets[:len(mine)] == mine
    uri = "data:image/jpeg;base64," + base64.b64encode(read(DOG)).decode()
    r = vision_stack.post(DETECT, {"image": uri, "classes": [top, top]}, headers=NO_CACHE)
    assert r.status_code == 200 and r.json()["detections"] == dets
    # max_detections keeps the best; a higher confidence keeps fewer.
    r = post_image(vision_stack, read(DOG), query="?max_detections=2", headers=NO_CACHE)
    assert r.status_code == 200 and r.json()["detections"] == full[:2]
    c = full[0]["confidence"]
    r = post_image(vision_stack, read(DOG), query=f"?confidence={c:.4f}&iou=0.45",
                   headers=NO_CACHE)
    assert r.status_code == 200
    assert all(d["confidence"] >= c - 1e-4 for d in r.json()["detections"])
    assert len(r.json()["detections"]) < len(full)


def test_cache_miss_then_hit(vision_stack):
    img = noise_png(1)
    r1 = post_image(vision_stack, img, ctype="image/png")
    assert r1.status_code == 200 and r1.headers["X-Cache"] == "MISS"
    r2 = post_image(vision_stack, img, ctype="image/png")
    assert r2.status_code == 200 and r2.headers["X-Cache"] == "HIT", r2.headers
    assert r2.headers["X-Cache-Key"] == r1.headers["X-Cache-Key"]
    b1, b2 = r1.json(), r2.json()
    assert {k: b1[k] for k in ("model", "width", "height", "detections")} == \
           {k: b2[k] for k in ("model", "width", "height", "detections")}
    assert b2["timing"] == {"decode_ms": 0, "inference_ms": 0, "queue_ms": 0}
    # Every parameter is in the key; so is the client (the cache is not shared).
    r3 = post_image(vision_stack, img, ctype="image/png", query="?iou=0.3")
    assert r3.headers["X-Cache"] == "MISS"
    r4 = post_image(vision_stack, img, ctype="image/png", client="other")
    assert r4.headers["X-Cache"] == "MISS"
    # The data URI of the same bytes is the same request.
    uri = "data:image/png;base64," + base64.b64encode(img).decode()
    r5 = vision_stack.post(DETECT, {"image": uri})
    assert r5.headers["X-Cache"] == "HIT" and r5.json()["detections"] == b1["detections"]


def test_detect_during_chat_stream(vision_stack):
    """A detection and a long chat stream share the NPU: the detection is
    served while the stream is still generating, and both complete."""
    st = vision_stack
    # Up to 4096 tokens: seconds of generation on the test models.
    resp = st.post("/v1/chat/completions",
                   {"model": st.model, "stream": True, "max_tokens": 4096, "temperature": 0,
                    "messages": [{"role": "user", "content": "Tell me a long story."}]},
                   headers=NO_CACHE, stream=True)
    assert resp.status_code == 200
    chat_id = resp.headers["X-Request-Id"]
    it = resp.iter_lines()
    first = next(l for l in it if l)
    assert first.startswith(b"data: ")
    results = []

    def detect():
        results.append(post_image(st, noise_png(2, 320, 240), ctype="image/png",
                                  headers=NO_CACHE))

    t = threading.Thread(target=detect)
    t.start()
    t.join(60)
    assert results and results[0].status_code == 200, results and results[0].text[:300]
    det_id = results[0].headers["X-Request-Id"]
    rest = b"\n".join(it)
    resp.close()
    assert b"data: [DONE]" in rest
    # The pool logs a request when it ends: the detection's line comes
    # first, so it finished while the chat was still generating.
    order = []
    deadline = time.monotonic() + 10
    while len(order) < 2 and time.monotonic() < deadline:
        order = [json.loads(l)["request_id"] for l in st.log("edgegate.log").splitlines()
                 if '"msg":"request"' in l and (chat_id in l or det_id in l)]
        time.sleep(0.1)
    assert order == [det_id, chat_id], order
    m = st.get("/metrics", client=None).text
    assert 'endpoint="vision"' in m


# ---- bad requests ---------------------------------------------------------

def png_header(w, h):
    """A PNG that claims w x h: valid signature and IHDR, a tiny IDAT."""
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb(vision_stack):
    for data in (png_header(30000, 30000), png_header(8000, 8000)):
        r = post_image(vision_stack, data, ctype="image/png")
        err = assert_api_error(r, 400, param="image", code="image_too_large")
        assert "limit" in err["message"]
    uri = "data:image/png;base64," + base64.b64encode(png_header(30000, 30000)).decode()
    assert_api_error(vision_stack.post(DETECT, {"image": uri}), 400, code="image_too_large")
    # The workers are fine afterwards.
    assert post_image(vision_stack, read(DOG)).status_code == 200


def test_corrupt_images(vision_stack):
    dog = read(DOG)
    err = assert_api_error(post_image(vision_stack, dog[:len(dog) // 2]), 400, param="image",
                           code="invalid_image")
    assert "jpeg" in err["message"].lower()
    png = noise_png(3)
    assert_api_error(post_image(vision_stack, png[:len(png) - 30], ctype="image/png"), 400,
                     code="invalid_image")
    err = assert_api_error(post_image(vision_stack, b"GIF89a" + b"\0" * 100), 400,
                           code="invalid_image")
    assert "not a JPEG or PNG" in err["message"]
    assert_api_error(post_image(vision_stack, os.urandom(2000)), 400, code="invalid_image")


def test_bad_requests(vision_stack):
    st = vision_stack
    dog = read(DOG)
    b64 = base64.b64encode(dog).decode()
    assert_api_error(post_image(st, b""), 400)
    assert_api_error(st.post(DETECT, raw=b""), 400)
    assert_api_error(post_image(st, dog, ctype="text/plain"), 415)
    assert_api_error(post_image(st, dog, ctype="image/gif"), 415)
    assert_api_error(post_image(st, dog, query="?model=nope"), 400, param="model",
                     code="model_not_found")
    assert_api_error(st.post(DETECT, {"image": "data:image/jpeg;base64," + b64,
                                      "model": "nope"}), 400, param="model",
                     code="model_not_found")
    assert_api_error(st.post(DETECT, {"image": "data:image/jpeg;base64," + b64[:-3] + "!!="}),
                     400, param="image", code="invalid_base64")
    assert_api_error(st.post(DETECT, {"image": "data:image/jpeg;base64," + b64[:-1]}),
                     400, param="image", code="invalid_base64")
    assert_api_error(st.post(DETECT, {"image": "https://example.com/dog.jpg"}), 400,
                     param="image", code="invalid_image")
    assert_api_error(st.post(DETECT, {"image": "data:image/gif;base64,R0lG"}), 400,
                     param="image")
    assert_api_error(st.post(DETECT, {"model": "yolov3-tiny"}), 400, param="image",
                     code="missing_required_parameter")
    assert_api_error(st.post(DETECT, {"image": 3}), 400, param="image", code="invalid_type")
    uri = "data:image/jpeg;base64," + b64
    for field, value in (("confidence", 1.5), ("confidence", "0.5"), ("iou", -0.1),
                         ("max_detections", 0), ("max_detections", 2.5), ("classes", 3),
                         ("classes", []), ("classes", [80]), ("classes", [-1])):
        r = st.post(DETECT, {"image": uri, field: value})
        err = assert_api_error(r, 400)
        assert err["param"].startswith(field), (field, value, err)
    assert_api_error(st.post(DETECT, {"image": uri, "size": 416}), 400, code="unknown_parameter")
    assert_api_error(st.post(DETECT, raw=b"{not json"), 400, code="invalid_json")
    assert_api_error(st.post(DETECT, raw=b"[1]"), 400)
    for q in ("?confidence=2", "?confidence=abc", "?iou=nan", "?max_detections=x",
              "?classes=1,,2", "?classes=80", "?colour=red", "?model=yolov3-tiny&model=x",
              "?classes=%zz"):
        assert_api_error(post_image(st, dog, query=q), 400)
    # JSON options belong in the body.
    assert_api_error(st.post(DETECT + "?iou=0.3", {"image": uri}), 400)
    # Method and key.
    r = st.get(DETECT)
    assert r.status_code == 405
    r = st.session.post(st.url + DETECT, data=dog, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 401


# ---- limits: deadline and size --------------------------------------------

def small_jpeg():
    im = cv2.resize(cv2.imread(DOG), (160, 120), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", im)
    assert ok
    return buf.tobytes()


def test_deadline(vision_tight_stack):
    st = vision_tight_stack
    r = post_image(st, small_jpeg())
    assert_api_error(r, 504, code="deadline_exceeded")
    # Nothing half-done was cached, and the worker serves the next request.
    r = post_image(st, small_jpeg())
    assert_api_error(r, 504, code="deadline_exceeded")
    assert r.headers.get("X-Cache") == "MISS"
    assert st.get("/v1/models").status_code == 200


def test_image_bytes_limit(vision_tight_stack):
    st = vision_tight_stack
    dog = read(DOG)
    assert 100000 < len(dog) < 190000
    # Over images.max_bytes: the pool's 413.
    assert_api_error(post_image(st, dog), 413, param="image")
    uri = "data:image/jpeg;base64," + base64.b64encode(dog).decode()
    assert_api_error(st.post(DETECT, {"image": uri}), 413)
    # Over the body limit that follows from it: nginx's 413, before the pool.
    big = dog + b"\0" * 300000
    assert_api_error(post_image(st, big), 413)
