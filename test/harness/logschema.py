"""The log schema of docs/logs.md, read from its events table, and a check
of greygate's log lines against it: every event named there, at one of its
levels, with only its keys."""

import re
from pathlib import Path

from .util import parse_kv

DOC = Path(__file__).resolve().parents[2] / "docs" / "logs.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| ([a-z, ]+) \| ((?:`[^`]*`)?) \|")
_schema = None


def schema():
    """{event: (levels, keys)} from the table."""
    global _schema
    if _schema is None:
        _schema = {}
        for line in DOC.read_text().splitlines():
            m = _ROW.match(line)
            if m:
                levels = {x.strip() for x in m.group(2).split(",")}
                _schema[m.group(1)] = (levels, set(m.group(3).strip("`").split()))
        assert _schema, f"no events table in {DOC}"
    return _schema


def violations(lines, limit=20):
    """What in LINES (a greygate's log) the schema does not allow."""
    out = []
    s = schema()
    for line in lines:
        if " level=" not in line and not line.startswith("level="):
            continue
        d = parse_kv(line)
        ev = d.get("event")
        if ev not in s:
            out.append(f"event {ev!r} is not in docs/logs.md: {line}")
        else:
            levels, keys = s[ev]
            if d.get("level") not in levels:
                out.append(f"event {ev} at level {d.get('level')} (docs/logs.md: "
                           f"{', '.join(sorted(levels))}): {line}")
            extra = set(d) - keys - {"level", "event"}
            if extra:
                out.append(f"event {ev}: keys {sorted(extra)} are not in docs/logs.md: {line}")
        if len(out) >= limit:
            break
    return out
