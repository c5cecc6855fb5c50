"""The admin endpoint: /healthz for health checks, /metrics for Prometheus,
alone and with workers (numbers added up over the workers)."""
import re
import urllib.error
import urllib.request

import pytest

from conftest import assert_reply, free_port, token, wait_until


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pat, line)
        if m:
            return float(m.group(1))
    return None


@pytest.fixture
def admin_gg(greygate_factory):
    def make(**kw):
        port = free_port(19925)
        gg = greygate_factory(admin={"listen": f"127.0.0.1:{port}"}, **kw)
        gg.admin_port = port
        return gg
    return make


def traffic(gg, tok):
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@elsewhere.example>"), 554)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        c.cmd("QUIT")


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_count_what_happened(admin_gg, workers):
    gg = admin_gg(workers=workers)
    tok = token()
    for _ in range(4):
        traffic(gg, tok)
    code, text = get(gg.admin_port, "/metrics")
    assert code == 200
    # the start-up probe connection of greygate itself is not counted; ours are
    # (conftest's start check opened one session as well)
    assert metric(text, "greygate_connections_total") >= 4
    assert metric(text, "greygate_refusals_total", rule="relay_denied") == 4
    assert metric(text, "greygate_decision_seconds_count") == 8
    assert metric(text, "greygate_decision_seconds_bucket", le="+Inf") == 8
    assert metric(text, 'greygate_build_info', version="0.1.0") == 1
    wait_until(lambda: metric(get(gg.admin_port, "/metrics")[1],
                              "greygate_connections_active") == 0, 5,
               what="active connections back to 0")
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z_]+(\{[^}]*\})? \S+$", line), line


def test_metrics_decisions_and_reloads(admin_gg, tmp_path):
    gg = admin_gg(greylist={"enabled": True, "delay": 60})
    tok = token()
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        c.cmd(f"MAIL FROM:<s-{tok}@sender.example>")
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 450)
    gg.hup()
    gg.wait_event("reload", result="ok")
    _, text = get(gg.admin_port, "/metrics")
    assert metric(text, "greygate_decisions_total", action="greylist", reason="new") == 1
    assert metric(text, "greygate_config_reloads_ok_total") == 1
    assert metric(text, "greygate_store_seconds_count") == 1


def test_healthz_ok(admin_gg):
    gg = admin_gg()
    code, body = get(gg.admin_port, "/healthz")
    assert (code, body.strip()) == (200, "ok")
    assert get(gg.admin_port, "/nothing")[0] == 404


def test_healthz_reports_backend_down(admin_gg, fake_backend):
    down = fake_backend("close")
    gg = admin_gg(upstream=down)
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 503, 5, what="503")
    code, body = get(gg.admin_port, "/healthz")
    assert code == 503 and "backend unavailable" in body


def test_healthz_reports_store_down(admin_gg):
    # a Redis that is not there: the store is down, mail still flows (accept)
    port = free_port(16379)
    gg = admin_gg(store={"type": "redis", "redis": {"host": "127.0.0.1", "port": port,
                                                    "timeout_ms": 200}, "file": ""})
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 503, 5, what="503")
    assert "store unavailable" in get(gg.admin_port, "/healthz")[1]


def test_healthz_with_workers(admin_gg):
    gg = admin_gg(workers=2)
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 200, 5, what="200")
