"""The admin endpoint: /healthz for health checks, /metrics for Prometheus,
alone and with workers (numbers added up over the workers)."""
import re

import pytest

from harness.fakes import ScriptedSMTP
from harness.greygate import get, metric
from harness.smtp import assert_reply
from harness.util import free_port, token, wait_until


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


def test_refusals_counted_by_their_own_rule(admin_gg, fake_backend):
    """Each refusal is counted under the rule its log line names, the ones
    that once landed in rule="other" included: a backend refusing MAIL
    (backend_mail) or one client's XCLIENT (backend_refused), too many
    recipients, ETRN without etrn_networks, bytes that are no PROXY header,
    a greylisting store that is down with failure = tempfail."""
    script = ScriptedSMTP("MAIL", "554", xclient=True, xclient_refuse="127.0.0.7")
    dead_redis = free_port(16379)
    gg = admin_gg(upstream=fake_backend("serve", script),
                  limits={"max_recipients": 2},
                  proxy_protocol_networks=["127.0.0.9/32"],
                  greylist={"enabled": True},
                  whitelist={"senders": ["@partner.example"]},
                  store={"type": "redis", "file": "", "failure": "tempfail",
                         "redis": {"host": "127.0.0.1", "port": dead_redis,
                                   "timeout_ms": 200}})
    tok = token()
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        for _ in range(2):
            assert_reply(c.cmd("ETRN relay.example"), 502, "5.5.1")
        # the backend refuses the MAIL: every RCPT hears its refusal
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@partner.example>"), 250)
        for i in range(2):
            assert_reply(c.cmd(f"RCPT TO:<m{i}-{tok}@test.example>"), 554)
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@partner.example>"), 250)
        for i in range(2):
            assert_reply(c.cmd(f"RCPT TO:<r{i}-{tok}@test.example>"), 250)
        for i in range(2, 5):
            assert_reply(c.cmd(f"RCPT TO:<r{i}-{tok}@test.example>"), 452, "4.5.3")
        assert_reply(c.cmd("RSET"), 250)
        # greylisted, but the store is down
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        for i in range(4):
            assert_reply(c.cmd(f"RCPT TO:<g{i}-{tok}@test.example>"), 451, "4.3.0")
        c.cmd("QUIT")
    with gg.raw(source="127.0.0.7") as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<x-{tok}@partner.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<x-{tok}@test.example>"), 451, "4.3.0")
        c.cmd("QUIT")
    for _ in range(3):
        with gg.raw(source="127.0.0.9") as c:
            c.send(b"EHLO sneaky.example\r\n")
            assert_reply(c.reply(), 421, "4.7.0")
            assert c.wait_closed()
    want = {"etrn_networks": 2, "backend_mail": 2, "max_recipients": 3, "store-failure": 4,
            "backend_refused": 1, "proxy_protocol": 3}
    for rule, n in want.items():
        gg.wait_event("reject", rule=rule)
        assert len(gg.events("reject", rule=rule)) == n, rule
    _, text = get(gg.admin_port, "/metrics")
    got = {rule: metric(text, "greygate_refusals_total", rule=rule) for rule in want}
    assert got == want
    assert metric(text, "greygate_decisions_total", action="tempfail",
                  reason="store-failure") == 4
    # the MAIL refusal's two, the two taken, the one whose XCLIENT was refused
    assert metric(text, "greygate_decisions_total", action="pass",
                  reason="whitelist-sender") == 5
    assert "other" not in text, [ln for ln in text.splitlines() if "other" in ln]


def test_healthz_ok(admin_gg):
    gg = admin_gg()
    code, body = get(gg.admin_port, "/healthz")
    assert (code, body.strip()) == (200, "ok")
    text = get(gg.admin_port, "/metrics")[1]
    assert (metric(text, "greygate_backend_up"), metric(text, "greygate_store_up")) == (1, 1)
    assert get(gg.admin_port, "/nothing")[0] == 404


def test_healthz_reports_backend_down(admin_gg, fake_backend):
    down = fake_backend("close")
    gg = admin_gg(upstream=down)
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 503, 5, what="503")
    code, body = get(gg.admin_port, "/healthz")
    assert code == 503 and "backend unavailable" in body
    text = get(gg.admin_port, "/metrics")[1]
    assert (metric(text, "greygate_backend_up"), metric(text, "greygate_store_up")) == (0, 1)


def test_healthz_reports_store_down(admin_gg):
    # a Redis that is not there: the store is down, mail still flows (accept)
    port = free_port(16379)
    gg = admin_gg(store={"type": "redis", "redis": {"host": "127.0.0.1", "port": port,
                                                    "timeout_ms": 200}, "file": ""})
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 503, 5, what="503")
    assert "store unavailable" in get(gg.admin_port, "/healthz")[1]
    text = get(gg.admin_port, "/metrics")[1]
    assert (metric(text, "greygate_backend_up"), metric(text, "greygate_store_up")) == (1, 0)


def test_healthz_with_workers(admin_gg):
    gg = admin_gg(workers=2)
    wait_until(lambda: get(gg.admin_port, "/healthz")[0] == 200, 5, what="200")
