"""contrib/: the Grafana dashboard and the Prometheus alerting rules are
checked against a real greygate's /metrics (every series they use exists)
and by promtool (every expression parses; the alert rules' own tests)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.greygate import get
from harness.smtp import assert_reply
from harness.util import token

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "greygate.json"
RULES = ROOT / "contrib" / "prometheus" / "greygate.rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "greygate.rules.test.yml"
# the scrape's own series, not greygate's
NOT_OURS = {"up"}


def dashboard_exprs():
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))
    d = json.loads(DASHBOARD.read_text())
    walk(d["panels"])
    exprs += [v["definition"] for v in d["templating"]["list"] if v.get("definition")]
    return exprs


def rule_exprs():
    # one expression per "expr:" (folded with >- where long)
    text = RULES.read_text()
    return re.findall(r"expr: (?:>-\n)?((?:.+\n?)(?:(?: {10,}.+\n?)*))", text)


def series_names(expr):
    names = set(re.findall(r"\b(greygate_[a-z_]+)", expr))
    names |= {n for n in re.findall(r"\b([a-z_]+)\{", expr) if n in NOT_OURS}
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names if n not in NOT_OURS}


def promtool():
    tool = shutil.which("promtool")
    if not tool:
        pytest.skip("promtool not installed (Debian package prometheus; tools/deps.sh installs it)")
    return tool


def test_every_series_used_is_exported(admin_gg):
    gg = admin_gg(greylist={"enabled": True, "delay": 300})
    tok = token()
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 450)
    exported = set(re.findall(r"^# TYPE (\S+) ", get(gg.admin_port, "/metrics")[1], re.M))
    used = set()
    for e in dashboard_exprs() + rule_exprs():
        used |= series_names(e)
    assert used, "no expressions found"
    assert used - exported == set(), f"used but not exported: {sorted(used - exported)}"


def test_dashboard_expressions_parse(tmp_path):
    tool = promtool()
    # Grafana's variables, as Prometheus would see them after substitution
    exprs = [e.replace("$__rate_interval", "5m").replace("$instance", ".*")
             for e in dashboard_exprs() if not e.startswith("label_values")]
    rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard:expr{i}\n        expr: {json.dumps(e)}\n"
        for i, e in enumerate(exprs))
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(rules)
    r = subprocess.run([tool, "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout


def test_alert_rules_check_and_pass_their_tests():
    tool = promtool()
    r = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([tool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                       cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
