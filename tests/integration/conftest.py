"""Integration tests: a real nginx in front of a real edgegate pool.

Each stack is started by scripts/up on free loopback ports in its own
directory under /tmp and always stopped by scripts/down at the end of the
session, also when tests fail. Stacks start lazily: `stack` (the main one)
for most tests, `slow_stack` (one worker, long deadline) for the client
disconnect test, `deadline_stack` (a few milliseconds of deadline) for the
deadline header.

Run from the repo root:  /usr/bin/python3 -m pytest -q tests/integration
EDGEGATE_BUILD names the build tree (default build); EDGEGATE_KEEP=1 keeps
the stack directories (logs, configs) after the run.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("EDGEGATE_BUILD", "build"))
SHARED_MODEL = os.path.join(ROOT, "..", "shared", "fixtures", "llm", "tiny-qwen2-bpe-q8_0.gguf")


def skip_visibly(reason):
    # pytest -q hides skip reasons unless -rs; print them too.
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


def free_ports(n):
    """n distinct free loopback TCP ports (the kernel picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_model_cache = {}


def find_model():
    """The GGUF model the stacks serve: the shared fixture, else one made by
    scripts/make-model once per build tree; None (with a reason) if neither."""
    if "path" in _model_cache:
        return _model_cache["path"], _model_cache["why"]
    path, why = None, ""
    if os.path.isfile(SHARED_MODEL):
        path = os.path.realpath(SHARED_MODEL)
    else:
        print("SKIP: ../shared absent (using scripts/make-model instead)", file=sys.stderr)
        made = os.path.join(BUILD, "integration", "tiny-q8_0-seed1.gguf")
        mm = os.path.join(ROOT, "scripts", "make-model")
        if os.path.isfile(made):
            path = made
        elif os.access(mm, os.X_OK):
            os.makedirs(os.path.dirname(made), exist_ok=True)
            r = subprocess.run([mm, "--shape", "tiny", "--type", "q8_0", "--seed", "1",
                                "-o", made + ".tmp"], capture_output=True, text=True)
            if r.returncode == 0:
                os.replace(made + ".tmp", made)
                path = made
            else:
                why = f"scripts/make-model failed: {r.stderr.strip()[-300:]}"
        else:
            why = "../shared absent and scripts/make-model missing: no model to serve"
    _model_cache.update(path=path, why=why)
    return path, why


class Stack:
    """One running edgegate: URLs, keys, and helpers to call it."""

    def __init__(self, name, up_args=(), clients=("default",)):
        self.name = name
        self.up_args = list(up_args)
        self.clients = clients
        self.dir = None
        self.env = {}
        self.keys = {}

    # -- lifecycle ---------------------------------------------------------
    def start(self, model):
        self.dir = tempfile.mkdtemp(prefix=f"edgegate-it-{self.name}-", dir="/tmp")
        # nginx workers run as www-data when we are root: they must reach
        # DIR/run (socket) and DIR/tmp (request bodies).
        os.chmod(self.dir, 0o711)
        port, http_port, plain_port = free_ports(3)
        keys = [os.path.join(ROOT, "scripts", "keys"), "--dir", os.path.join(self.dir, "keys")]
        for c in self.clients:
            keys += ["--client", c]
        subprocess.run(keys, check=True, capture_output=True)
        cmd = [os.path.join(ROOT, "scripts", "up"), "--dir", self.dir, "--port", str(port),
               "--http-port", str(http_port), "--plain-port", str(plain_port),
               "--model", model] + self.up_args
        env = dict(os.environ, EDGEGATE_BUILD=BUILD)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/up failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        with open(os.path.join(self.dir, "edgegate.env")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    self.env[k] = shlex.split(v)[0] if v else ""
        for c in self.clients:
            self.keys[c] = subprocess.run(keys[:3] + ["--show", c], check=True,
                                          capture_output=True, text=True).stdout.strip()
        self.keys["admin"] = self.env["EDGEGATE_ADMIN_KEY"]
        self.url = self.env["EDGEGATE_URL"]
        self.http_url = self.env["EDGEGATE_HTTP_URL"]
        self.plain_url = self.env["EDGEGATE_PLAIN_URL"]
        self.ca = self.env["EDGEGATE_CA"]
        self.model = self.env["EDGEGATE_MODEL"]
        self.session = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE & co. (they would override verify) and
        # proxies: the gateway's own certificate must verify, on loopback.
        self.session.trust_env = False
        self.session.verify = self.ca

    def stop(self, keep):
        if not self.dir:
            return
        if getattr(self, "session", None):
            self.session.close()   # idle keep-alive connections would slow nginx's quit
        r = subprocess.run([os.path.join(ROOT, "scripts", "down"), "--dir", self.dir],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"scripts/down for {self.dir}: {r.stdout}{r.stderr}", file=sys.stderr)
        if keep:
            print(f"\nedgegate-it: kept {self.dir} (logs in logs/)", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- processes ---------------------------------------------------------
    def pool_pid(self):
        with open(self.env["EDGEGATE_POOL_PID_FILE"]) as f:
            return int(f.read().strip())

    def nginx_pid(self):
        with open(self.env["EDGEGATE_NGINX_PID_FILE"]) as f:
            return int(f.read().strip())

    def worker_pids(self):
        """Pids of the pool master's children (its workers)."""
        master = self.pool_pid()
        kids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # State and ppid follow the parenthesized command name.
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == master and fields[0] != "Z":   # not yet-unreaped
                kids.append(int(d))
        return sorted(kids)

    def log(self, name):
        path = os.path.join(self.dir, "logs", name)
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- HTTP helpers ------------------------------------------------------
    def auth(self, client="default"):
        return {"Authorization": f"Bearer {self.keys[client]}"}

    def get(self, path, client="default", **kw):
        headers = kw.pop("headers", {})
        if client:
            headers = {**self.auth(client), **headers}
        kw.setdefault("timeout", 30)
        return self.session.get(self.url + path, headers=headers, **kw)

    def post(self, path, body=None, client="default", raw=None, **kw):
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        if client:
            headers.update(self.auth(client))
        data = raw if raw is not None else json.dumps(body)
        kw.setdefault("timeout", 60)
        return self.session.post(self.url + path, data=data, headers=headers, **kw)

    def chat(self, messages=None, client="default", **fields):
        body = {"model": self.model,
                "messages": messages or [{"role": "user", "content": "Hello there!"}]}
        body.update(fields)
        return self.post("/v1/chat/completions", body, client=client,
                         stream=bool(fields.get("stream")))

    def wait_health(self, timeout=30, want=None):
        """Polls /health until it answers 200 (and want(json) holds)."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                r = self.session.get(self.url + "/health", timeout=5)
                last = (r.status_code, r.text[:300])
                if r.status_code == 200 and (want is None or want(r.json())):
                    return r.json()
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        raise AssertionError(f"/health did not recover in {timeout}s; last: {last}")


def parse_sse(resp):
    """Reads an SSE response to its end: (list of JSON chunks, saw_done)."""
    chunks, done = [], False
    for line in resp.iter_lines(decode_unicode=False):
        if not line or line.startswith(b":"):
            continue
        assert line.startswith(b"data: "), line
        data = line[len(b"data: "):]
        if data == b"[DONE]":
            done = True
            continue
        assert not done, "data after [DONE]"
        chunks.append(json.loads(data))
    return chunks, done


def assert_api_error(r, status, param=None, code=None):
    """r is an OpenAI-style JSON error with the given status (and param/code)."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert "param" in err and "code" in err
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def _run_stack(request, name, up_args=(), clients=("default",)):
    """Generator for the stack fixtures: start, yield, always stop."""
    if not os.access(os.path.join(BUILD, "edgegate-fcgi"), os.X_OK):
        skip_visibly(f"{BUILD}/edgegate-fcgi is not built (make all)")
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        skip_visibly("nginx is not installed (scripts/deps)")
    model, why = find_model()
    if not model:
        skip_visibly(why)
    st = Stack(name, up_args, clients)
    try:
        st.start(model)
        yield st
    finally:
        keep = bool(os.environ.get("EDGEGATE_KEEP")) or request.session.testsfailed > 0
        st.stop(keep)


@pytest.fixture(scope="session")
def stack(request):
    """The main stack: 2 workers, default generation limits, rate limits high
    enough that no test here runs into them (limits_stack tests those)."""
    yield from _run_stack(
        request, "main",
        ["--workers", "2", "--rate-client", "1000r/s", "--burst-client", "2000",
         "--rate-ip", "2000r/s", "--burst-ip", "4000", "--max-tokens-cap", "512"],
        clients=("default", "node"))


@pytest.fixture(scope="session")
def limits_stack(request):
    """Tight nginx limits: 5 r/s (burst 10) per client, 50 r/s (burst 100)
    per IP, 2 requests at once per IP; one worker."""
    yield from _run_stack(
        request, "limits",
        ["--workers", "1", "--rate-client", "5r/s", "--burst-client", "10",
         "--rate-ip", "50r/s", "--burst-ip", "100", "--conn-limit", "2",
         "--max-tokens-cap", "4096", "--n-ctx", "4096"],
        clients=("default", "flood"))


@pytest.fixture(scope="session")
def slow_stack(request):
    """One worker and a long deadline: a request that kept generating after
    its client left would visibly hold up the next one."""
    yield from _run_stack(
        request, "slow",
        ["--workers", "1", "--deadline-ms", "120000", "--max-tokens-cap", "100000",
         "--n-ctx", "4096", "--read-timeout", "300s"])


@pytest.fixture(scope="session")
def deadline_stack(request):
    """A deadline of a few milliseconds, so generation is cut by it."""
    yield from _run_stack(
        request, "deadline",
        ["--workers", "1", "--deadline-ms", "5", "--max-tokens-cap", "4096",
         "--n-ctx", "4096"])


# ---- issue 4: stacks with [npu], [budgets] or [cache] settings ------------
# scripts/up renders the pool config without these sections; a stack that
# needs them appends them to DIR/edgegate.conf and reloads the pool (SIGHUP),
# which replaces every worker (the arbiter, budgets and cache are opened by
# each worker after fork, so the new workers use the new settings).

def reconfigure(st, extra_conf, timeout=60):
    """Appends extra_conf to the stack's pool config and reloads it; returns
    once every worker was replaced and /health says "ok" again."""
    import signal
    path = os.path.join(st.dir, "edgegate.conf")
    with open(path, "a") as f:
        f.write("\n# appended by the integration tests\n" + extra_conf + "\n")
    r = subprocess.run([os.path.join(BUILD, "edgegate-fcgi"), "-c", path, "--test-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"config rejected: {r.stdout}{r.stderr}"
    old = set(st.worker_pids())
    os.kill(st.pool_pid(), signal.SIGHUP)
    end = time.monotonic() + timeout
    while True:
        pids = set(st.worker_pids())
        if pids and not (pids & old):
            break
        assert time.monotonic() < end, "workers were not replaced after SIGHUP"
        time.sleep(0.1)
    st.wait_health(timeout=30, want=lambda h: h["status"] == "ok")


def run_stack_conf(request, name, up_args=(), clients=("default",), extra_conf=""):
    """Like the stack fixtures, with extra pool config applied by a reload."""
    gen = _run_stack(request, name, up_args, clients)
    st = next(gen)
    try:
        if extra_conf:
            reconfigure(st, extra_conf)
        yield st
    finally:
        gen.close()   # runs _run_stack's finally: scripts/down


# ---- issue 6: a stack with an embedding model -----------------------------
_embed_cache = {}
BGE_VOCAB = os.path.join(ROOT, "..", "shared", "fixtures", "tokenizer", "ggml-vocab-bert-bge.gguf")


def find_embed_model():
    """A bert-tiny f16 embedding model made by scripts/make-model once per
    build tree (with the bge WordPiece vocabulary when ../shared has it);
    None (with a reason) when it cannot be made."""
    if "path" not in _embed_cache:
        made = os.path.join(BUILD, "integration", "bert-tiny-f16-seed1.gguf")
        cmd = [os.path.join(ROOT, "scripts", "make-model"), "--shape", "bert-tiny", "--type", "f16",
               "--seed", "1", "-o", made + ".tmp"]
        if os.path.isfile(BGE_VOCAB):
            cmd += ["--vocab", os.path.realpath(BGE_VOCAB)]
        else:
            print("SKIP: ../shared absent (embedding model with the synthesized vocabulary)",
                  file=sys.stderr)
        path, why = made, ""
        if not os.path.isfile(made):
            os.makedirs(os.path.dirname(made), exist_ok=True)
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env=dict(os.environ, EDGEGATE_BUILD=BUILD))
            if r.returncode == 0:
                os.replace(made + ".tmp", made)
            else:
                path, why = None, f"scripts/make-model failed: {r.stderr.strip()[-300:]}"
        _embed_cache.update(path=path, why=why)
    return _embed_cache["path"], _embed_cache["why"]


EMBED_CONF = """budgets = { tokens_per_day = 1000000; tokens_per_month = 0; };
clients = ( { id = "poor"; tokens_per_day = 20; } );"""


@pytest.fixture(scope="session")
def embed_stack(request):
    """The chat model plus an embedding model (id "embed"): one worker,
    budgets with a default tier and a client "poor" of 20 tokens a day."""
    model, why = find_embed_model()
    if not model:
        skip_visibly(why)
    yield from run_stack_conf(
        request, "embed",
        ["--workers", "1", "--embed-model", model, "--rate-client", "1000r/s",
         "--burst-client", "2000", "--rate-ip", "2000r/s", "--burst-ip", "4000"],
        clients=("default", "node", "poor"), extra_conf=EMBED_CONF)


# ---- issue 5: a stack with a vision model ---------------------------------
DARKNET = "/usr/share/darknet"
VISION_CFG = os.path.join(DARKNET, "cfg", "yolov3-tiny.cfg")
VISION_NAMES = os.path.join(DARKNET, "data", "coco.names")
_vision_cache = {}


def find_vision_weights():
    """Random darknet weights for yolov3-tiny, made by
    build/edgegate-make-weights once per build tree; None (with a reason)
    when the darknet package or the tool is missing."""
    if "path" not in _vision_cache:
        tool = os.path.join(BUILD, "edgegate-make-weights")
        made = os.path.join(BUILD, "integration", "yolov3-tiny-seed1.weights")
        path, why = made, ""
        if not os.path.isfile(VISION_CFG):
            path, why = None, f"{VISION_CFG} absent (apt-get install darknet)"
        elif not os.access(tool, os.X_OK):
            path, why = None, f"{tool} is not built (make all)"
        elif not os.path.isfile(made):
            os.makedirs(os.path.dirname(made), exist_ok=True)
            r = subprocess.run([tool, VISION_CFG, "-o", made + ".tmp", "--seed", "1"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                os.replace(made + ".tmp", made)
            else:
                path, why = None, f"edgegate-make-weights failed: {r.stderr.strip()[-300:]}"
        _vision_cache.update(path=path, why=why)
    return _vision_cache["path"], _vision_cache["why"]


@pytest.fixture(scope="session")
def vision_stack(request):
    """The chat model plus yolov3-tiny (random weights, coco names) as vision
    model "yolov3-tiny": 2 workers of 2 threads, the cache on, a deadline
    long enough for a detection on a busy machine and room for long chats."""
    weights, why = find_vision_weights()
    if not weights:
        skip_visibly(why)
    yield from _run_stack(
        request, "vision",
        ["--workers", "2", "--threads", "2", "--deadline-ms", "20000",
         "--max-tokens-cap", "4096", "--n-ctx", "4096",
         "--rate-client", "1000r/s", "--burst-client", "2000",
         "--rate-ip", "2000r/s", "--burst-ip", "4000",
         "--vision-cfg", VISION_CFG, "--vision-weights", weights,
         "--vision-names", VISION_NAMES],
        clients=("default", "other"))


@pytest.fixture(scope="session")
def vision_tight_stack(request):
    """yolov3-tiny with tight limits: one worker of one thread, a 50 ms
    deadline (past decoding, well short of a detection: det_abort() stops
    it) and images of at most 100000 bytes."""
    weights, why = find_vision_weights()
    if not weights:
        skip_visibly(why)
    yield from _run_stack(
        request, "vision-tight",
        ["--workers", "1", "--deadline-ms", "50", "--max-image-bytes", "100000",
         "--vision-cfg", VISION_CFG, "--vision-weights", weights,
         "--vision-names", VISION_NAMES])
