"""The official openai npm client as a real client: plain and streamed chat
over TLS through nginx. npm installs the pinned package (package-lock.json)
into the build tree; the test skips visibly without node/npm."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, skip_visibly

SRC = os.path.join(ROOT, "tests", "integration", "node")


@pytest.fixture(scope="session")
def node_dir():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        skip_visibly("node/npm absent: the openai npm client test needs them")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True)
                .stdout.strip().lstrip("v").split(".")[0])
    if major < 18:
        skip_visibly(f"node {major} is too old for the openai package (needs 18+)")
    work = os.path.join(BUILD, "integration", "node")
    os.makedirs(work, exist_ok=True)
    stamp = os.path.join(work, "node_modules", ".edgegate-lock")
    with open(os.path.join(SRC, "package-lock.json")) as f:
        lock = f.read()
    if not os.path.exists(stamp) or open(stamp).read() != lock:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(SRC, name), work)
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=work, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            skip_visibly(f"npm ci failed (registry unreachable?): {r.stderr.strip()[-300:]}")
        with open(stamp, "w") as f:
            f.write(lock)
    shutil.copy(os.path.join(SRC, "openai_client.mjs"), work)
    return work


def test_openai_npm_client(stack, node_dir):
    env = dict(os.environ, EDGEGATE_URL=stack.url, EDGEGATE_KEY=stack.keys["node"],
               EDGEGATE_MODEL=stack.model, NODE_EXTRA_CA_CERTS=stack.ca)
    env.pop("NODE_TLS_REJECT_UNAUTHORIZED", None)   # the certificate must verify
    r = subprocess.run(["node", os.path.join(node_dir, "openai_client.mjs")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"node failed:\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["plain"]["usage"]["prompt_tokens"] > 0
    assert out["stream"]["content"] == out["plain"]["content"]
    assert out["bad_model"] == {"status": 400, "param": "model", "code": "model_not_found"}
    assert out["bad_key"] == {"status": 401, "code": "invalid_api_key"}


def test_node_rejects_an_unknown_certificate(stack, node_dir):
    # Without NODE_EXTRA_CA_CERTS the self-signed certificate must not verify:
    # proves the previous test really checked TLS.
    env = dict(os.environ, EDGEGATE_URL=stack.url, EDGEGATE_KEY=stack.keys["node"],
               EDGEGATE_MODEL=stack.model)
    env.pop("NODE_EXTRA_CA_CERTS", None)
    env.pop("NODE_TLS_REJECT_UNAUTHORIZED", None)
    r = subprocess.run(["node", os.path.join(node_dir, "openai_client.mjs")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "certificate" in (r.stdout + r.stderr).lower() or "connection error" in r.stderr.lower(), r.stderr[-500:]
