"""Fixtures of the end-to-end suite: one topology (topology.py) for the
whole session, a token and a Mailer (sending.py) per test."""

import os
import shutil
import signal
import time

import pytest

import topology as T
from sending import Mailer, letters


def pytest_configure(config):
    # SIGTERM/SIGHUP (timeout, a closed terminal) would end Python without
    # any teardown, leaving namespaces and processes behind: turn them into
    # a KeyboardInterrupt, which pytest handles with full teardown (Ctrl-C
    # already is one).
    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def pytest_report_header(config):
    san = "sanitizer build" if T.binary_is_sanitized(T.GREYGATE_BIN) else "plain build"
    return [f"greygate: {T.GREYGATE_BIN} ({san}); "
            f"greylist delay {T.DELAY}s, sender retries every {T.SENDER_MIN_BACKOFF}-"
            f"{T.SENDER_MAX_BACKOFF}s (+{T.SENDER_QUEUE_RUN_DELAY}s queue runs)"]


def _missing_prerequisites():
    if os.geteuid() != 0:
        return "needs root (network namespaces, Postfix)"
    for tool in ("ip", "postfix", "postconf", "postqueue", "sendmail", "dnsmasq",
                 "redis-server", "redis-cli", "swaks", "setpriv", "sysctl", "bash"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="session")
def topo():
    why = _missing_prerequisites()
    if why:
        pytest.fail(f"e2e: {why}", pytrace=False)
    t0 = time.monotonic()
    with T.Topology() as t:
        t.started_in = time.monotonic() - t0
        yield t
    if t.problems:
        pytest.fail("e2e teardown: " + "\n".join(t.problems), pytrace=False)


@pytest.fixture(autouse=True)
def greygates_stay_up(request):
    """After every test: both greygates are still running (a crash is a
    finding of its own, with the log tail)."""
    yield
    if "topo" not in request.fixturenames:
        return
    t = request.getfixturevalue("topo")
    dead = [gg for gg in t.greygate.values() if gg.proc is not None and gg.proc.poll() is not None]
    if dead:
        pytest.fail("greygate died: " + "; ".join(
            f"{gg.name} exit {gg.proc.returncode}\n" + "\n".join(gg.log_lines()[-30:])
            for gg in dead), pytrace=False)



@pytest.fixture
def tok():
    return letters()



@pytest.fixture
def mailer(topo):
    return Mailer(topo)


