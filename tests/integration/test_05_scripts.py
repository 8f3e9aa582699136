"""The operator scripts on their own (no running stack needed)."""

import os
import re
import stat
import subprocess

import pytest

from conftest import ROOT

KEYS = os.path.join(ROOT, "scripts", "keys")
UP = os.path.join(ROOT, "scripts", "up")
DOWN = os.path.join(ROOT, "scripts", "down")


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_keys_makes_private_maps(tmp_path):
    d = tmp_path / "keys"
    r = run(KEYS, "--dir", str(d))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in ("keys.map", "admin.map"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    default = run(KEYS, "--dir", str(d), "--show", "default").stdout.strip()
    admin = run(KEYS, "--dir", str(d), "--show", "admin").stdout.strip()
    assert re.fullmatch(r"eg-[0-9a-f]{48}", default), default
    assert re.fullmatch(r"egadmin-[0-9a-f]{48}", admin), admin
    assert f"{default} default;" in (d / "keys.map").read_text()
    assert f"{admin} 1;" in (d / "admin.map").read_text()


def test_keys_add_show_revoke(tmp_path):
    d = str(tmp_path / "keys")
    run(KEYS, "--dir", d)
    a1 = run(KEYS, "--dir", d, "--client", "alice", "--show", "alice").stdout.strip()
    a2 = run(KEYS, "--dir", d, "--client", "alice", "--show", "alice").stdout.strip()
    assert a1 and a1 == a2, "adding an existing client must keep its key"
    bob = run(KEYS, "--dir", d, "--client", "bob", "--show", "bob").stdout.strip()
    assert bob != a1
    assert run(KEYS, "--dir", d, "--revoke", "alice").returncode == 0
    assert run(KEYS, "--dir", d, "--show", "alice").returncode != 0
    assert run(KEYS, "--dir", d, "--show", "bob").stdout.strip() == bob


@pytest.mark.parametrize("bad", ["admin", "has space", "semi;colon", "", "-dash", "x" * 65])
def test_keys_refuses_bad_client_ids(tmp_path, bad):
    r = run(KEYS, "--dir", str(tmp_path / "k"), "--client", bad)
    assert r.returncode != 0 and ("bad client id" in r.stderr or "needs a value" in r.stderr)


@pytest.mark.parametrize("args,msg", [
    (["--port", "abc"], "--port must be a number"),
    (["--rate-client", "fast"], "--rate-client"),
    (["--max-body", "lots"], "--max-body"),
    (["--bogus", "1"], "unknown option"),
    (["--model", "/no/such/model.gguf"], "not found"),
])
def test_up_rejects_bad_options(tmp_path, args, msg):
    r = run(UP, "--dir", str(tmp_path / "d"), *args)
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    assert not (tmp_path / "d").exists(), "nothing may be made before the options are valid"


def test_up_rejects_unsafe_dir(tmp_path):
    r = run(UP, "--dir", str(tmp_path / "a b"))
    assert r.returncode != 0 and "may only hold" in r.stderr


def test_down_with_nothing_running(tmp_path):
    r = run(DOWN, "--dir", str(tmp_path))
    assert r.returncode == 0 and "nothing runs" in r.stdout


@pytest.mark.parametrize("script", ["up", "down", "keys", "run-demo", "bench-gateway"])
def test_help(script):
    r = run(os.path.join(ROOT, "scripts", script), "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"scripts/{script}:"), r.stdout[:200]
