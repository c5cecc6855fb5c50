"""docs/logs.md is the log schema: every event the sources can write is in
it, and the check that every functional test runs on its greygate's log
(harness.logschema, at teardown) refuses what the table does not allow."""

import re
from pathlib import Path

from harness import logschema

ROOT = Path(__file__).resolve().parents[2]
# ll_begin(&l, LVL, "event"), log_msg(LVL, "event", ...), begin_line(&l, s, "event")
EVENT_AT = re.compile(r'\b(?:ll_begin|log_msg|begin_line)\([^;"]*"([a-z_]+)"')


def test_every_event_in_the_sources_is_documented():
    found = {}
    for src in sorted((ROOT / "proxy").glob("*.c")) + sorted((ROOT / "lib").glob("*.c")):
        for m in EVENT_AT.finditer(src.read_text()):
            found.setdefault(m.group(1), src.name)
    assert len(found) > 20, found
    missing = {e: f for e, f in found.items() if e not in logschema.schema()}
    assert not missing, f"events written but not in docs/logs.md: {missing}"


def test_the_check_refuses_what_the_table_does_not_allow():
    ok = "2026-12-03T16:58:46.936Z level=info event=connect id=7 client=203.0.113.5 port=40312"
    assert logschema.violations([ok, "a line of another program"]) == []
    bad = [ok.replace("port=", "colour=blue port="),
           ok.replace("event=connect", "event=connected"),
           ok.replace("level=info", "level=error")]
    v = logschema.violations(bad)
    assert len(v) == 3, v
    assert "['colour']" in v[0] and "'connected'" in v[1] and "level error" in v[2]
