"""Issue 6, the knowledge base through nginx: POST /admin/kb/documents (JSON
and raw bodies), GET /admin/kb, GET /admin/kb/search, DELETE
/admin/kb/documents/ID; versions and no-op re-ingests; bad input (binary,
empty, bad JSON, missing id, HTML whose script text must never be indexed,
documents over the size limits); the admin key is required; concurrent
ingest and search from several clients; the command line on the same
file while the pool runs."""

import json
import os
import subprocess
import threading
import urllib.parse

import pytest

from conftest import BUILD, assert_api_error, reconfigure, _run_stack

ROUTER_MD = """# Router guide

## Reset

To reset the router hold the pin button for ten seconds until the lamp blinks amber.

## Wireless

The wireless passphrase is printed on the label under the device.
"""

SCRIPT_HTML = """<html><head><title>Bread</title>
<script>var zanzibarword = "quixotic"; document.write("xylophonium");</script>
<style>.zebrastyle { color: red }</style></head>
<body><h1>Sourdough</h1><p>Feed the starter with flour and water.</p>
<noscript>noscriptonlyword</noscript><!-- commentonlyword -->
<p>Bake at 230 degrees &amp; enjoy.</p></body></html>"""


@pytest.fixture(scope="module")
def kb_stack(request):
    gen = _run_stack(
        request, "kb",
        ["--workers", "2", "--max-body", "1m", "--rate-client", "1000r/s",
         "--burst-client", "2000", "--rate-ip", "2000r/s", "--burst-ip", "4000"])
    st = next(gen)
    try:
        # A document limit below the body limit, so both 413s can be seen.
        conf = os.path.join(st.dir, "edgegate.conf")
        with open(conf) as f:
            text = f.read()
        line = next(l for l in text.splitlines() if l.startswith("kb = {"))
        with open(conf, "w") as f:
            f.write(text.replace(line, line.replace("};", "max_document_bytes = 20000; };")))
        reconfigure(st, "")
        yield st
    finally:
        gen.close()


def ingest(st, doc_id, content, title=None, typ=None):
    body = {"id": doc_id, "content": content}
    if title is not None:
        body["title"] = title
    if typ is not None:
        body["type"] = typ
    return st.post("/admin/kb/documents", body, client="admin")


def search(st, q, top_k=5, **extra):
    params = urllib.parse.urlencode({"q": q, "top_k": top_k, **extra})
    return st.get("/admin/kb/search?" + params, client="admin")


def info(st):
    r = st.get("/admin/kb", client="admin")
    assert r.status_code == 200, r.text
    return r.json()


def test_ingest_search_replace_delete(kb_stack):
    st = kb_stack
    v0 = info(st)["version"]
    r = ingest(st, "docs/router.md", ROUTER_MD)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["id"] == "docs/router.md" and a["type"] == "markdown"
    assert a["chunks"] == 2 and a["version"] == v0 + 1
    assert not a["replaced"] and not a["unchanged"]

    # The same bytes again: nothing changes, not even the version.
    r = ingest(st, "docs/router.md", ROUTER_MD)
    assert r.json()["unchanged"] is True and r.json()["version"] == v0 + 1

    r = search(st, "how do I reset the router?")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["version"] == v0 + 1 and s["mode"] == "bm25"
    top = s["data"][0]
    assert top["document"] == "docs/router.md"
    assert top["title"] == "Router guide > Reset"
    assert top["document_title"] == "Router guide"
    assert "pin button" in top["text"] and top["score"] > 0
    assert ROUTER_MD.encode()[top["start"]:top["end"]].decode().startswith("To reset")

    # A raw Markdown body with the id in the query string replaces it.
    changed = ROUTER_MD + "\n## Lamp\n\nA red lamp means no uplink.\n"
    r = st.post("/admin/kb/documents?id=docs%2Frouter.md&title=Router+manual", raw=changed,
                client="admin", headers={"Content-Type": "text/markdown"})
    assert r.status_code == 200, r.text
    assert r.json()["replaced"] is True and r.json()["chunks"] == 3
    assert r.json()["version"] == v0 + 2
    s = search(st, "red lamp uplink").json()
    assert s["data"][0]["title"] == "Router guide > Lamp"
    assert s["data"][0]["document_title"] == "Router manual"

    docs = {d["id"]: d for d in info(st)["documents"]}
    assert docs["docs/router.md"]["chunks"] == 3
    assert docs["docs/router.md"]["bytes"] == len(changed.encode())

    r = st.session.delete(st.url + "/admin/kb/documents/docs/router.md",
                          headers=st.auth("admin"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "docs/router.md", "deleted": True, "version": v0 + 3}
    assert search(st, "red lamp uplink").json()["data"] == []
    r = st.session.delete(st.url + "/admin/kb/documents/docs/router.md",
                          headers=st.auth("admin"), timeout=30)
    assert_api_error(r, 404, code="not_found")


def test_html_scripts_are_never_indexed(kb_stack):
    st = kb_stack
    r = ingest(st, "bread.html", SCRIPT_HTML)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "html"
    for word in ("zanzibarword", "quixotic", "xylophonium", "zebrastyle", "noscriptonlyword",
                 "commentonlyword"):
        s = search(st, word).json()
        assert s["data"] == [], (word, s)
    s = search(st, "starter flour").json()
    assert s["data"][0]["document"] == "bread.html"
    assert s["data"][0]["document_title"] == "Bread"
    assert "230 degrees & enjoy" in search(st, "bake degrees").json()["data"][0]["text"]


def test_chinese(kb_stack):
    st = kb_stack
    text = "路由器的默认密码印在标签上。\n\n面包需要烤四十分钟。\n"
    assert ingest(st, "zh.txt", text).status_code == 200
    s = search(st, "默认密码在哪里").json()
    assert s["data"][0]["document"] == "zh.txt"
    assert "默认密码" in s["data"][0]["text"]


def test_bad_documents(kb_stack):
    st = kb_stack
    v = info(st)["version"]
    # Binary: NUL bytes, or bytes that are not UTF-8.
    r = st.post("/admin/kb/documents?id=bin.txt", raw=b"\x7fELF\x00\x01\x02binary",
                client="admin", headers={"Content-Type": "application/octet-stream"})
    err = assert_api_error(r, 400, code="invalid_value")
    assert "binary" in err["message"]
    r = st.post("/admin/kb/documents?id=latin1.txt", raw="caf\xe9".encode("latin-1"),
                client="admin", headers={"Content-Type": "text/plain"})
    assert "binary" in assert_api_error(r, 400)["message"]
    r = ingest(st, "nul.txt", "a\u0000b")
    assert "binary" in assert_api_error(r, 400)["message"]
    # Empty, or nothing but markup that is dropped.
    assert "empty" in assert_api_error(ingest(st, "empty.txt", ""), 400)["message"]
    r = ingest(st, "blank.html", "<script>only()</script><!-- x -->", typ="html")
    assert "empty" in assert_api_error(r, 400)["message"]
    # Bad JSON and bad members, named.
    r = st.post("/admin/kb/documents", raw='{"id": "x", "content": ', client="admin")
    assert_api_error(r, 400)
    r = st.post("/admin/kb/documents", raw='["x"]', client="admin")
    assert_api_error(r, 400)
    assert_api_error(st.post("/admin/kb/documents", {"content": "x"}, client="admin"), 400,
                     param="id")
    assert_api_error(st.post("/admin/kb/documents", {"id": "x"}, client="admin"), 400,
                     param="content")
    assert_api_error(st.post("/admin/kb/documents", {"id": "x", "content": 3}, client="admin"),
                     400, param="content")
    assert_api_error(ingest(st, "x", "text", typ="pdf"), 400, param="type")
    r = st.post("/admin/kb/documents", {"id": "x", "content": "y", "path": "z"}, client="admin")
    assert_api_error(r, 400, param="path")
    assert_api_error(ingest(st, "tab\tid", "text"), 400, param="id")
    r = st.post("/admin/kb/documents", raw="no id", client="admin",
                headers={"Content-Type": "text/plain"})
    assert_api_error(r, 400, param="id")
    # Too large: over kb.max_document_bytes (the pool), over the body limit (nginx).
    r = ingest(st, "big.txt", "word " * 5000)
    assert_api_error(r, 413, code="document_too_large")
    r = st.post("/admin/kb/documents?id=huge.txt", raw=b"x" * (2 << 20), client="admin",
                headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    # Wrong methods and paths.
    r = st.get("/admin/kb/documents", client="admin")
    assert_api_error(r, 405)
    assert_api_error(st.get("/admin/kb/nothing", client="admin"), 404)
    assert info(st)["version"] == v


def test_bad_searches(kb_stack):
    st = kb_stack
    assert_api_error(st.get("/admin/kb/search", client="admin"), 400, param="q")
    assert_api_error(search(st, ""), 400, param="q")
    assert_api_error(search(st, "x", top_k=0), 400, param="top_k")
    assert_api_error(search(st, "x", top_k=101), 400, param="top_k")
    assert_api_error(search(st, "x", top_k="two"), 400, param="top_k")
    assert_api_error(search(st, "x", mode="magic"), 400, param="mode")
    assert_api_error(search(st, "x", mode="dense"), 400, param="q")   # no embedding model
    assert_api_error(search(st, "a" * 20000), 414)   # nginx: the URI is too long
    r = st.get("/admin/kb/search?q=%FF%FE", client="admin")
    assert_api_error(r, 400, param="q")
    s = search(st, "the of and").json()
    assert s["data"] == [] and s["terms"] == 0


def test_admin_key_required(kb_stack):
    st = kb_stack
    r = st.post("/admin/kb/documents", {"id": "x", "content": "y"}, client="default")
    assert r.status_code in (401, 403)
    assert st.get("/admin/kb", client=None).status_code in (401, 403)
    assert st.get("/admin/kb/search?q=router", client="default").status_code in (401, 403)


def test_concurrent_ingest_and_search(kb_stack):
    """Writers replace documents while readers search: every answer comes from
    one snapshot (a document's hits are all of one version) and no request
    fails."""
    st = kb_stack

    def doc(n, gen):
        parts = 3 if gen % 2 else 5
        return "".join(f"## Part {p}\n\nconcurrencymarker gen{gen % 2} doc{n} part {p} text.\n\n"
                       for p in range(parts))

    for n in range(2):
        assert ingest(st, f"conc{n}.md", doc(n, 0)).status_code == 200
    errors = []

    def writer(n):
        for gen in range(1, 12):
            r = ingest(st, f"conc{n}.md", doc(n, gen))
            if r.status_code != 200 or not r.json()["replaced"]:
                errors.append(("write", r.status_code, r.text[:200]))

    def reader():
        for _ in range(30):
            r = search(st, "concurrencymarker", top_k=50)
            if r.status_code != 200:
                errors.append(("read", r.status_code, r.text[:200]))
                continue
            by_doc = {}
            for h in r.json()["data"]:
                by_doc.setdefault(h["document"], []).append(h["text"])
            for d, texts in by_doc.items():
                g0 = sum("gen0" in t for t in texts)
                g1 = sum("gen1" in t for t in texts)
                if not ((g0 == 5 and g1 == 0) or (g1 == 3 and g0 == 0)):
                    errors.append(("mixed", d, g0, g1))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]


def test_command_line_shares_the_file(kb_stack, tmp_path):
    """--kb-ingest, --kb-search, --kb-list and --kb-delete work on the file
    the running pool serves (LMDB is multi-process)."""
    st = kb_stack
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "a.md").write_text("# Alpha\n\nThe heliotrope protocol needs port 4242.\n")
    (d / "sub" / "b.html").write_text("<title>Beta</title><p>Gamma rays and heliotrope.</p>")
    (d / "skip.bin").write_bytes(b"\x00\x01")
    exe = os.path.join(BUILD, "edgegate-fcgi")
    conf = os.path.join(st.dir, "edgegate.conf")
    r = subprocess.run([exe, "-c", conf, "--kb-ingest", str(d)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    by_id = {l["id"]: l for l in lines}
    assert by_id[f"{d}/a.md"]["chunks"] == 1
    assert by_id[f"{d}/sub/b.html"]["type"] == "html"
    assert "skipped" in by_id[f"{d}/skip.bin"]
    # The pool sees it at once.
    s = search(st, "heliotrope port").json()
    assert s["data"][0]["document"] == f"{d}/a.md"
    r = subprocess.run([exe, "-c", conf, "--kb-search", "gamma rays"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["data"][0]["document_title"] == "Beta"
    r = subprocess.run([exe, "-c", conf, "--kb-delete", f"{d}/a.md"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] is True
    assert search(st, "heliotrope port").json()["data"][0]["document"] == f"{d}/sub/b.html"
    r = subprocess.run([exe, "-c", conf, "--kb-list"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0
    assert json.loads(r.stdout)["version"] == info(st)["version"]
    r = subprocess.run([exe, "-c", conf, "--kb-delete", "no/such"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "no document" in r.stderr


def test_dense_and_hybrid_with_an_embedding_model(embed_stack):
    """With kb.embedding_model (scripts/up --embed-model sets it) every chunk
    gets a vector at ingest, under the NPU arbiter; searches rank dense,
    hybrid (the default) or BM25. The test model has random weights, so
    only the plumbing is checked here, not the ranking."""
    st = embed_stack
    r = ingest(st, "dense/router.md", ROUTER_MD)
    assert r.status_code == 200, r.text
    stats = info(st)["stats"]
    assert stats["embed_dim"] > 0
    assert stats["vectors"] == stats["chunks"] >= 2
    for mode in ("dense", "hybrid", "bm25"):
        s = search(st, "how do I reset the router", mode=mode)
        assert s.status_code == 200, s.text
        s = s.json()
        assert s["mode"] == mode and s["data"], s
        if mode == "dense":
            assert all(-1.001 <= h["score"] <= 1.001 for h in s["data"])
    assert search(st, "reset the router").json()["mode"] == "hybrid"
    assert search(st, "reset the router", mode="bm25").json()["data"][0]["title"] == \
        "Router guide > Reset"
