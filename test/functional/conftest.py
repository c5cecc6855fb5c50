"""Fixtures of greygate's functional tests. The harness they use (the
private Postfix, greygate processes, fake servers, SMTP and Redis clients)
is the package test/harness: test modules import what they need from it,
never from this file or from each other. Fixtures used by more than one
test module live here.

Everything binds to 127.0.0.x only. Every process started here is stopped
at teardown, on every path.
"""

import os
import shutil
import signal
import subprocess

import pytest

from harness.fakes import BannerServer, DnsServer, FakeBackend
from harness.greygate import (GL, Greygate, binary_is_sanitized, default_config,
                              merge, stop_gates)
from harness.postfix import PostfixBackend, sweep_stale_instances
from harness.redis import RedisServer
from harness.util import GREYGATE_BIN, free_port, token


def pytest_configure(config):
    # A SIGTERM (e.g. from `timeout`) would end Python without running any
    # fixture teardown, leaving Postfix and greygate processes behind: turn
    # it into a KeyboardInterrupt, which pytest handles with full teardown.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    sweep_stale_instances()


def pytest_report_header(config):
    san = "sanitizer build" if binary_is_sanitized(GREYGATE_BIN) else "plain build"
    exists = "" if os.path.isfile(GREYGATE_BIN) else " (MISSING: every test will fail)"
    try:
        pf = subprocess.run(["postconf", "-h", "mail_version"], capture_output=True,
                            text=True).stdout.strip()
    except OSError:
        pf = "not installed"
    return [f"greygate: {GREYGATE_BIN} ({san}){exists}", f"postfix: {pf}"]


@pytest.fixture(scope="session")
def postfix_backend():
    """The shared private Postfix instance. Tests that kill or reconfigure it
    use the ``make_postfix_backend`` factory instead."""
    pf = PostfixBackend()
    try:
        pf.start()
        yield pf
    finally:
        pf.destroy()


@pytest.fixture
def make_postfix_backend():
    """Factory for a fresh private Postfix instance (function scope), e.g.
    make_postfix_backend(extra_main={"smtpd_discard_ehlo_keywords": "dsn"})."""
    made = []

    def make(extra_main=None):
        pf = PostfixBackend(extra_main=extra_main)
        made.append(pf)
        pf.start()
        return pf

    try:
        yield make
    finally:
        for pf in made:
            pf.destroy()


@pytest.fixture
def fake_backend():
    made = []

    def make(mode, serve=None):
        fb = FakeBackend(mode, serve)
        made.append(fb)
        return fb

    try:
        yield make
    finally:
        for fb in made:
            fb.close()


@pytest.fixture(scope="session")
def default_dns(tmp_path_factory):
    d = DnsServer(tmp_path_factory.mktemp("dns-default"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture
def dns_server(tmp_path_factory):
    """dns_server(lines) -> a running DnsServer with those records."""
    made = []

    def make(lines=(), local=("example", "test")):
        d = DnsServer(tmp_path_factory.mktemp("dns"), lines, local)
        made.append(d)
        return d.start()

    try:
        yield make
    finally:
        for d in made:
            d.stop()


@pytest.fixture
def greygate_factory(postfix_backend, default_dns, tmp_path_factory):
    """greygate_factory(upstream=None, config=None, env=None, start=True, **overrides)
    -> running Greygate in front of UPSTREAM (anything with .address;
    default: the shared Postfix). OVERRIDES are merged into the default
    config (dicts merged one level deep, None removes a key); CONFIG
    replaces it (dict or raw text)."""
    made = []

    def make(upstream=None, config=None, env=None, start=True, port=None, **overrides):
        backend = upstream or postfix_backend
        port = port or free_port(12525)
        workdir = tmp_path_factory.mktemp("greygate")
        if config is None:
            config = merge(default_config(port, backend.address, default_dns.address), overrides)
            # never the system-wide default (/run/greygate/control.sock):
            # parallel greygates would fight over it
            config.setdefault("control_socket", str(workdir / "control.sock"))
        gg = Greygate(workdir, config, port, env=env)
        made.append(gg)
        if start:
            gg.start()
        return gg

    yield make
    errors = stop_gates(made)
    if errors:
        pytest.fail(errors, pytrace=False)


@pytest.fixture
def greygate(greygate_factory):
    """A greygate with the default test configuration in front of the shared
    Postfix backend."""
    return greygate_factory()


@pytest.fixture
def tok():
    return token()


@pytest.fixture
def redis_server():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (Debian package redis-server)",
                    pytrace=False)
    rs = RedisServer()
    try:
        rs.start()
        yield rs
    finally:
        rs.destroy()


@pytest.fixture
def gl_gate(greygate_factory, tmp_path, request):
    """gl_gate(kind, greylist={..}, store={..}, redis={..}, **overrides) ->
    a running greygate with greylisting on over KIND ("memory" or "redis"),
    its control socket in the test's temp dir (v6=True: listening on [::1]
    too; upstream: another backend). With Redis it waits until greygate is
    connected, so that the first decision is Redis's."""
    count = [0]

    def make(kind, greylist=None, store=None, redis=None, start=True, wait_redis=True,
             v6=False, upstream=None, **overrides):
        count[0] += 1
        cfg = {"greylist": merge(GL, greylist or {}),
               "control_socket": str(tmp_path / f"ctl{count[0]}.sock")}
        if kind == "memory":
            cfg["store"] = merge({"type": "memory", "file": ""}, store or {})
        else:
            rs = request.getfixturevalue("redis_server")
            cfg["store"] = merge({"type": "redis", "file": "", "failure": "accept",
                                  "redis": merge({"host": "127.0.0.1", "port": rs.port,
                                                  "timeout_ms": 250,
                                                  "connect_timeout_ms": 250,
                                                  "prefix": "gg:"}, redis or {})},
                                 store or {})
        port = None
        if v6:      # listen on [::1] too, same port
            port = free_port(12525)
            cfg["listen"] = [f"127.0.0.1:{port}", f"[::1]:{port}"]
        cfg.update(overrides)
        gg = greygate_factory(upstream=upstream, start=False, port=port, **cfg)
        if start:
            gg.start()
            if kind == "redis" and wait_redis:
                gg.wait_event("store", state="connected", timeout=10)
        return gg

    return make


@pytest.fixture
def admin_gg(greygate_factory):
    """admin_gg(**config) -> a greygate with admin.listen on a free port
    (gg.admin_port)."""
    def make(**kw):
        port = free_port(19925)
        gg = greygate_factory(admin={"listen": f"127.0.0.1:{port}"}, **kw)
        gg.admin_port = port
        return gg
    return make


@pytest.fixture
def banner():
    """banner(mode) -> a BannerServer on 127.0.0.3:<free port> (the
    hand-over tests' primary MX)."""
    made = []

    def make(mode="down"):
        b = BannerServer(free_port(13025), mode)
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            b.close()
