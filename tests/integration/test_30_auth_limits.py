"""What nginx decides on its own: keys, admin, redirect, TLS, logs."""

import json
import os
import ssl
import socket
import stat
import subprocess
import time

import pytest
import requests

from conftest import assert_api_error


def assert_401(r):
    err = assert_api_error(r, 401, code="invalid_api_key")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert r.headers.get("X-Request-Id")
    return err


def test_missing_key(stack):
    assert_401(stack.get("/v1/models", client=None))
    assert_401(stack.post("/v1/chat/completions",
                          {"model": stack.model, "messages": [{"role": "user", "content": "x"}]},
                          client=None))


@pytest.mark.parametrize("header", [
    "Bearer eg-000000000000000000000000000000000000000000000000",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "eg-000000000000000000000000000000000000000000000000",
    "Bearer default",
], ids=["unknown", "empty", "basic", "no-scheme", "client-id-as-key"])
def test_wrong_key(stack, header):
    assert_401(stack.get("/v1/models", client=None, headers={"Authorization": header}))


def test_key_with_extra_text_is_rejected(stack):
    key = stack.keys["default"]
    assert_401(stack.get("/v1/models", client=None,
                         headers={"Authorization": f"Bearer {key} {key}"}))
    assert_401(stack.get("/v1/models", client=None,
                         headers={"Authorization": f"Bearer {key[:-1]}"}))


def test_bearer_scheme_is_case_insensitive(stack):
    r = stack.get("/v1/models", client=None,
                  headers={"Authorization": f"bearer {stack.keys['default']}"})
    assert r.status_code == 200, r.text


def test_admin_needs_the_admin_key(stack):
    assert_401(stack.get("/admin/", client=None))
    assert_401(stack.get("/admin/", client="default"))     # a client key is not enough
    r = stack.get("/admin/", client="admin")
    assert r.status_code not in (401, 403), (r.status_code, r.text)
    assert r.headers.get("X-Request-Id")


def test_admin_key_is_not_a_client_key(stack):
    assert_401(stack.get("/v1/models", client="admin"))


def test_keys_file_is_private(stack):
    keydir = os.path.join(stack.dir, "keys")
    assert stat.S_IMODE(os.stat(keydir).st_mode) == 0o700
    for name in ("keys.map", "admin.map"):
        assert stat.S_IMODE(os.stat(os.path.join(keydir, name)).st_mode) == 0o600
    env = os.path.join(stack.dir, "edgegate.env")
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600


def test_keys_never_reach_logs(stack):
    stack.get("/v1/models")
    stack.chat(max_tokens=1)
    time.sleep(1.2)   # access log is flushed every second
    for name in ("access.log", "edgegate.log", "nginx-error.log"):
        text = stack.log(name)
        for who, key in stack.keys.items():
            assert key not in text, f"{who}'s key appears in {name}"


def test_access_log_is_json_with_client_and_request_id(stack):
    r = stack.get("/v1/models")
    rid = r.headers["X-Request-Id"]
    time.sleep(1.2)
    lines = [json.loads(line) for line in stack.log("access.log").splitlines() if rid in line]
    assert len(lines) == 1
    assert lines[0]["client"] == "default" and lines[0]["status"] == 200
    assert lines[0]["tls"].startswith("TLSv1.")


def test_http_redirects_to_https(stack):
    r = requests.get(stack.http_url + "/v1/models?x=1", allow_redirects=False, timeout=10)
    assert r.status_code == 301
    assert r.headers["Location"] == stack.url + "/v1/models?x=1"
    # Following it lands on the TLS listener (401 without a key).
    r = requests.get(stack.http_url + "/v1/models", verify=stack.ca, timeout=10)
    assert r.url.startswith("https://") and r.status_code == 401


def test_plain_listener_serves_only_health(stack):
    r = requests.get(stack.plain_url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = requests.get(stack.plain_url + "/v1/models", headers=stack.auth(), timeout=10)
    assert_api_error(r, 404)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["TLSv1.3", "TLSv1.2"])
def test_tls_versions(stack, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(stack.ca)   # the self-signed cert verifies
    ctx.minimum_version = ctx.maximum_version = version
    port = int(stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == {"TLSv1_3": "TLSv1.3", "TLSv1_2": "TLSv1.2"}[version.name]


@pytest.mark.parametrize("args", [
    ["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"],          # old protocol
    ["-tls1_2", "-cipher", "AES128-SHA:AES256-SHA"],    # no forward secrecy, CBC
], ids=["tls1.1", "tls1.2-cbc-rsa-kx"])
def test_weak_tls_is_refused(stack, args):
    port = stack.url.rsplit(":", 1)[1]
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, out[-500:]
    assert "alert" in out and "Cipher is (NONE)" in out, out[-800:]


def test_metrics_from_loopback(stack):
    r = stack.session.get(stack.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")


def test_malformed_http_gets_json_errors(stack):
    # Errors nginx raises before it has a usable request still come as JSON.
    r = stack.session.get(stack.url + "/v1/models?" + "a" * 20000, headers=stack.auth(), timeout=10)
    assert_api_error(r, 414, code="uri_too_long")
    r = stack.get("/v1/models", client=None, headers={"Authorization": "Bearer " + "a" * 20000})
    assert_api_error(r, 400)
    ctx = ssl.create_default_context(cafile=stack.ca)
    port = int(stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"NONSENSE\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_error_pages_are_internal(stack):
    r = stack.session.get(stack.url + "/_edgegate/error/401", timeout=10)
    assert_api_error(r, 404)
