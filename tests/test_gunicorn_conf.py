"""gunicorn.conf.py: the worker count, and the refusal of per-process rate limits."""

from __future__ import annotations

import gc
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import clean_environment
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "gunicorn.conf.py"


def conf_with(monkeypatch, **env: str) -> dict:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(CONF))


def test_sync_workers_one_per_core_plus_one(monkeypatch):
    conf = conf_with(monkeypatch)
    assert conf["worker_class"] == "sync"
    assert conf["workers"] == (os.cpu_count() or 1) + 1
    assert conf["bind"] == "127.0.0.1:8000"


def test_web_concurrency_sets_the_worker_count(monkeypatch):
    assert conf_with(monkeypatch, WEB_CONCURRENCY="7")["workers"] == 7


def test_each_worker_freezes_what_the_app_made_at_start(monkeypatch):
    conf = conf_with(monkeypatch)
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def production_env(tmp_path, **env: str) -> dict[str, str]:
    base = clean_environment("RATELIMIT_", "WEB_CONCURRENCY")
    base.update({
        "APP_ENV": "production", "SECRET_KEY": "g" * 40, "INSTANCE_PATH": str(tmp_path),
        "PLIVO_AUTH_ID": "MAGUNICORNTEST000000", "PLIVO_AUTH_TOKEN": "token",
        "PLIVO_SENDER_NUMBERS": "+14155550100", "PUBLIC_BASE_URL": "https://mms.example.com",
    })
    base.update(env)
    return base


def start_gunicorn(tmp_path, port: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=production_env(tmp_path, **env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


@pytest.mark.integration
def test_production_refuses_memory_rate_limits_with_several_workers(tmp_path):
    process = start_gunicorn(tmp_path, free_port(), WEB_CONCURRENCY="2")
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "RATELIMIT_STORAGE_URI: 2 gunicorn workers cannot share memory:// rate limits" in err


@pytest.mark.integration
def test_one_worker_may_keep_memory_rate_limits(tmp_path):
    port = free_port()
    process = start_gunicorn(tmp_path, port, WEB_CONCURRENCY="1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/livez", timeout=2).ok
                break
            except requests.ConnectionError:
                assert process.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=20)
    assert "RATELIMIT_STORAGE_URI" not in err


@pytest.mark.integration
def test_a_bad_setting_stops_the_master_with_one_line(tmp_path):
    process = start_gunicorn(tmp_path, free_port(), WEB_CONCURRENCY="1",
                             PLIVO_AUTH_ID="not-an-account")
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Configuration error: PLIVO_AUTH_ID: expected MA or SA" in err
    assert "Traceback" not in err
