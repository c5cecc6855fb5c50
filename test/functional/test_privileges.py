"""Running as root is refused unless told; user/group drop after the
sockets are open (workers too); the pid file."""
import os
import subprocess

import pytest

from harness.smtp import assert_reply
from harness.util import token


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def test_root_refused_unless_told(greygate_factory):
    gg = greygate_factory(run_as_root=None, start=False)
    with pytest.raises(AssertionError):
        gg.start(timeout=5)
    gg.proc.wait(5)
    assert gg.proc.returncode != 0
    assert gg.events("privileges", result="failed")
    assert "run_as_root" in gg.log_text()
    gg.proc = None   # nothing left to stop


@pytest.mark.parametrize("workers", [1, 2])
def test_drops_to_user_after_binding(greygate_factory, workers, tmp_path):
    os.chmod(tmp_path, 0o755)
    pid_file = tmp_path / "greygate.pid"
    gg = greygate_factory(run_as_root=None, user="nobody", group="nogroup", workers=workers,
                          pid_file=str(pid_file), start=False)
    # the user must be able to read its configuration (workers, reloads):
    # pytest's temp folders are private, open the path to it
    for d in (gg.workdir, gg.workdir.parent, gg.workdir.parent.parent):
        os.chmod(d, 0o755)
    os.chmod(gg.conf_path, 0o644)
    gg.start()
    assert int(pid_file.read_text()) == gg.pid
    assert uid_of(gg.pid) == [65534] * 4
    kids = subprocess.run(["pgrep", "-P", str(gg.pid)], capture_output=True,
                          text=True).stdout.split()
    assert len(kids) == (2 if workers == 2 else 0)
    for k in kids:
        assert uid_of(int(k)) == [65534] * 4
    # and it still does its job
    tok = token()
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
    assert gg.events("privileges", user="nobody")


def test_unreadable_configuration_refused(greygate_factory):
    gg = greygate_factory(run_as_root=None, user="nobody", start=False)
    with pytest.raises(AssertionError):
        gg.start(timeout=5)
    gg.proc.wait(5)
    assert gg.proc.returncode != 0
    assert gg.events("privileges", result="failed", step="config")
    gg.proc = None


def test_unknown_user_refused(greygate_factory):
    gg = greygate_factory(run_as_root=None, user="no-such-user-here", start=False)
    with pytest.raises(AssertionError):
        gg.start(timeout=5)
    gg.proc.wait(5)
    assert gg.proc.returncode != 0
    assert gg.events("privileges", result="failed", step="user")
    gg.proc = None
