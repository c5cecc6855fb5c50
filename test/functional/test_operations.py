"""Operations: greygate -t / -V, SIGHUP reloads (good and broken files),
SIGTERM drains sessions and exits 0."""

import re
import signal
import socket
import subprocess
import time

import pytest

from harness.greygate import default_config, merge, render_config, require_binary
from harness.smtp import ConnectionClosed, assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR, tcp_listening, wait_until


def run_check(path):
    return subprocess.run([require_binary(), "-t", "-c", str(path)],
                          capture_output=True, text=True, timeout=30)


def good_config_text(port=2525, backend="127.0.0.1:10025"):
    return render_config(default_config(port, backend))


def with_line(text, lineno, new_line):
    """TEXT with NEW_LINE inserted so that it becomes line LINENO (1-based)."""
    lines = text.splitlines(keepends=True)
    lines.insert(lineno - 1, new_line + "\n")
    return "".join(lines)


# Each broken variant: the offending line goes to line 4 of a valid file.
BROKEN = {
    "syntax":          'helo_required = = true;',
    "unknown-setting": 'no_such_setting = 1;',
    "unknown-nested":  'limits = { max_lines = 10; };',
    "wrong-type":      'helo_required = "maybe";',
    "bad-network":     'mynetworks = [ "127.0.0.0/33" ];',
    "bad-listen":      'listen = [ "127.0.0.1:99999" ];',
}
BAD_LINE = 4


def broken_text(kind, port=2525, backend="127.0.0.1:10025"):
    cfg = default_config(port, backend)
    if kind in ("unknown-nested",):
        cfg.pop("limits")
    if kind == "wrong-type":
        cfg.pop("helo_required")
    if kind == "bad-network":
        cfg.pop("mynetworks")
    if kind == "bad-listen":
        cfg.pop("listen")
    return with_line(render_config(cfg), BAD_LINE, BROKEN[kind])


def test_version():
    r = subprocess.run([require_binary(), "-V"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    assert re.search(r"\d+\.\d+", out), out


def test_check_good_config(tmp_path):
    f = tmp_path / "good.conf"
    f.write_text(good_config_text())
    r = run_check(f)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind", list(BROKEN))
def test_check_broken_config(tmp_path, kind):
    f = tmp_path / f"{kind}.conf"
    f.write_text(broken_text(kind))
    r = run_check(f)
    assert r.returncode != 0, f"{kind} accepted: {r.stderr}"
    assert f"{f}:{BAD_LINE}:" in r.stderr, f"want '{f}:{BAD_LINE}: reason', got: {r.stderr!r}"
    assert len(r.stderr.split(f"{f}:{BAD_LINE}:", 1)[1].strip()) > 3, "no reason given"


def test_check_missing_file(tmp_path):
    f = tmp_path / "does-not-exist.conf"
    r = run_check(f)
    assert r.returncode != 0
    assert str(f) in r.stderr, r.stderr


def test_check_relay_domains_file_missing(tmp_path):
    cfg = default_config(2525, "127.0.0.1:10025")
    cfg.pop("relay_domains")
    cfg["relay_domains_file"] = str(tmp_path / "nope")
    f = tmp_path / "g.conf"
    f.write_text(render_config(cfg))
    r = run_check(f)
    assert r.returncode != 0, r
    assert str(f) in r.stderr or str(tmp_path / "nope") in r.stderr, r.stderr


def test_start_with_broken_config_fails(greygate_factory, tmp_path):
    gg = greygate_factory(start=False)
    gg.write_config(broken_text("unknown-setting", gg.port))
    p = subprocess.run([require_binary(), "-c", str(gg.conf_path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert f"{gg.conf_path}:{BAD_LINE}:" in p.stderr, p.stderr


def rcpt_reply(gg, rcpt, source=CLIENT_ADDR):
    with gg.raw(source=source) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250)
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        c.cmd("QUIT")
        return r


def deliver(gg, backend, tok, rcpt):
    with gg.raw() as c:
        c.send_message(f"s-{tok}@sender.example", [rcpt], dot_stuff(make_message(tok)))
        assert_reply(c.cmd("QUIT"), 221)
    backend.wait_mails(tok)


def test_sighup_good_config(greygate, postfix_backend, tok):
    assert_reply(rcpt_reply(greygate, f"x-{tok}@new.example"), 554, "5.7.1")
    mark = greygate.log_mark()
    greygate.write_config(merge(greygate.config,
                                {"local_domains": ["test.example", "new.example"]}))
    greygate.hup()
    greygate.wait_event("reload", since=mark, result="ok")
    assert greygate.alive()
    deliver(greygate, postfix_backend, tok, f"r-{tok}@new.example")
    deliver(greygate, postfix_backend, tok + "b", f"r-{tok}b@test.example")


def test_sighup_session_in_flight_keeps_its_config(greygate, postfix_backend, tok):
    """Sessions in flight finish on the configuration they started with, and
    no connection is dropped by a reload."""
    with greygate.raw() as old:
        old.greeting()
        old.ehlo()
        mark = greygate.log_mark()
        greygate.write_config(merge(greygate.config, {"local_domains": ["new.example"]}))
        greygate.hup()
        greygate.wait_event("reload", since=mark, result="ok")
        assert_reply(old.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(old.cmd(f"RCPT TO:<x-{tok}@new.example>"), 554, "5.7.1")
        assert_reply(old.cmd(f"RCPT TO:<r-{tok}@test.example>"), 250)
        assert_reply(old.cmd("DATA"), 354)
        old.send(dot_stuff(make_message(tok)))
        assert_reply(old.reply(), 250)
        assert_reply(old.cmd("QUIT"), 221)
    postfix_backend.wait_mails(tok)
    # new sessions use the new configuration
    assert_reply(rcpt_reply(greygate, f"y-{tok}@test.example"), 554, "5.7.1")
    assert rcpt_reply(greygate, f"y-{tok}@new.example").code == 250


@pytest.mark.parametrize("kind", ["syntax", "unknown-setting", "bad-network"])
def test_sighup_broken_config_is_refused(greygate, postfix_backend, tok, kind):
    text = broken_text(kind, greygate.port, postfix_backend.address)
    # the broken file would also add new.example; none of it may take effect
    text = text.replace('local_domains = [ "test.example" ];',
                        'local_domains = [ "test.example", "new.example" ];')
    assert "new.example" in text
    mark = greygate.log_mark()
    greygate.write_config(text)
    greygate.hup()
    [ev] = greygate.wait_event("reload", since=mark, result="failed")
    assert f"{greygate.conf_path}:{BAD_LINE}:" in ev["_line"], ev["_line"]
    time.sleep(0.2)
    assert greygate.alive(), "greygate died on a broken reload"
    assert_reply(rcpt_reply(greygate, f"x-{tok}@new.example"), 554, "5.7.1")
    deliver(greygate, postfix_backend, tok, f"r-{tok}@test.example")
    # and a later good reload still works
    mark = greygate.log_mark()
    greygate.write_config(merge(greygate.config,
                                {"local_domains": ["test.example", "new.example"]}))
    greygate.hup()
    greygate.wait_event("reload", since=mark, result="ok")
    assert rcpt_reply(greygate, f"y-{tok}@new.example").code == 250


def _connect_result(port):
    """'refused', 'closed', '421' or '220' for a new connection."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2,
                                     source_address=("127.0.0.7", 0))
    except (ConnectionRefusedError, ConnectionResetError):
        return "refused"
    except socket.timeout:
        return "timeout"
    with s:
        try:
            data = s.recv(512)
        except ConnectionResetError:
            return "closed"
        except socket.timeout:
            return "silent"
        if not data:
            return "closed"
        if data.startswith(b"220"):
            s.sendall(b"QUIT\r\n")
        return data[:3].decode()


def test_sigterm_drains_sessions(greygate, postfix_backend, tok):
    """SIGTERM: no new sessions, but sessions in the middle of a transaction
    finish it; then exit 0 (checked by the fixture at teardown too)."""
    a = greygate.raw()
    b = greygate.raw(source="127.0.0.6")
    try:
        for c, who in ((a, "a"), (b, "b")):
            c.greeting()
            c.ehlo()
            assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
            assert_reply(c.cmd(f"RCPT TO:<{who}-{tok}@test.example>"), 250)
        assert_reply(a.cmd("DATA"), 354)
        a.send(f"Subject: drain a {tok}\r\n\r\nfirst half\r\n".encode())
        greygate.term()
        # stops accepting soon
        wait_until(lambda: _connect_result(greygate.port) != "220", 5,
                   what="greygate to stop accepting new sessions")
        assert greygate.alive(), "greygate exited with sessions in flight"
        a.send(b"second half\r\n.\r\n")
        assert_reply(a.reply(), 250)
        assert_reply(b.cmd("DATA"), 354)
        b.send(dot_stuff(make_message(tok, subject="drain b")))
        assert_reply(b.reply(), 250)
        for c in (a, b):
            r = c.cmd("QUIT")
            assert r.code == 221, r
    finally:
        a.close()
        b.close()
    rc = greygate.wait_exit(10)
    assert rc == 0, f"exit status {rc}"
    mails = postfix_backend.wait_mails(tok, count=2)
    assert sorted(m.header("delivered-to")[0] for m in mails) == \
        [f"a-{tok}@test.example", f"b-{tok}@test.example"]
    assert mails[0].body or mails[1].body


def test_sigterm_grace_period_ends(greygate_factory):
    gg = greygate_factory(shutdown_grace=2)
    with gg.raw(timeout=20) as idle:
        idle.greeting()
        idle.ehlo()
        t0 = time.monotonic()
        gg.term()
        rc = gg.wait_exit(15)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc} after {elapsed:.1f}s"
        assert elapsed < 10, elapsed
        # the idle client was told (421) or at least disconnected
        try:
            r = idle.reply(timeout=2)
            assert r.code == 421, r
        except ConnectionClosed:
            pass


def test_sigterm_idle_exit_is_quick(greygate):
    t0 = time.monotonic()
    greygate.term()
    rc = greygate.wait_exit(10)
    assert rc == 0
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_signals_right_after_listen(greygate_factory, tmp_path, sig):
    """Once the listening socket exists, supervisors consider greygate up and
    may send SIGTERM (stop) or SIGHUP (reload) at any moment: neither may
    kill it by the signal's default action, and a stop is a clean exit 0."""
    gg = greygate_factory(start=False)
    binpath = require_binary()
    bad = []
    for i in range(10):
        errfile = tmp_path / f"stderr.{i}"
        with open(errfile, "wb") as err:
            p = subprocess.Popen([binpath, "-c", str(gg.conf_path)], stdin=subprocess.DEVNULL,
                                 stdout=err, stderr=err, start_new_session=True)
        try:
            wait_until(lambda: tcp_listening(gg.port) or p.poll() is not None, 15,
                       interval=0.0005, what="listen")
            p.send_signal(getattr(signal, sig))
            died = None
            if sig == "SIGHUP":
                time.sleep(0.1)
                died = p.poll()
                if died is None:
                    p.send_signal(signal.SIGTERM)
            rc = p.wait(15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if died is not None or rc != 0:
            tail = errfile.read_text(errors="replace").strip().splitlines()[-8:]
            bad.append((f"died of SIGHUP ({died})" if died is not None else f"exit {rc}", tail))
        wait_until(lambda: not tcp_listening(gg.port), 5, what="port released")
    assert not bad, f"{sig} right after listen, {len(bad)}/10 bad: " + \
        "\n".join(f"{what}: {tail}" for what, tail in bad[:3])


def test_sigterm_while_backend_hangs(greygate_factory, fake_backend, tok):
    """A backend that accepts but never answers: the start-up probe and a
    session's backend connection are pending when SIGTERM comes. greygate
    still exits 0 within the grace period, cleanly (no leak reports), and
    the waiting client never gets a 2xx."""
    fb = fake_backend("silent")
    gg = greygate_factory(upstream=fb, shutdown_grace=2,
                          backend={"connect_timeout": 5, "command_timeout": 30})
    with gg.raw(timeout=20) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        c.send(f"RCPT TO:<r-{tok}@test.example>\r\n")
        wait_until(lambda: fb.accepted >= 2, 5, what="backend connections")
        t0 = time.monotonic()
        gg.term()
        rc = gg.wait_exit(15)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc}"
        assert elapsed < 8, elapsed
        try:
            r = c.reply(timeout=2)
            assert 400 <= r.code < 500, r
        except ConnectionClosed:
            pass
