"""A second greygate on the same listen address or control socket refuses to
start, and leaves the first one whole: its connections, its control socket."""
import contextlib
import os
import signal
import socket
import subprocess

import pytest

from harness.greygate import Greygate, SANITIZER_MARKERS, merge, require_binary
from harness.smtp import RawSMTP
from harness.util import GREYGATE_BIN, free_port, tcp_listening, wait_until

CTL_BIN = os.path.join(os.path.dirname(GREYGATE_BIN), "greygate-ctl")


@pytest.fixture
def second(tmp_path_factory):
    """second(config, port) -> a Greygate launched without waiting for it to
    serve (it is expected not to); stopped and checked at teardown."""
    made = []

    def launch(config, port):
        gg = Greygate(tmp_path_factory.mktemp("second"), config, port)
        gg.logf = open(gg.log_path, "ab")
        gg.proc = subprocess.Popen([require_binary(), "-c", str(gg.conf_path)],
                                   stdin=subprocess.DEVNULL, stdout=gg.logf,
                                   stderr=gg.logf, start_new_session=True)
        made.append(gg)
        return gg

    yield launch
    bad = []
    for gg in made:
        if gg.alive():
            gg.term()
            if gg.wait_exit(20) is None:
                gg.proc.kill()
                gg.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(gg.proc.pid, signal.SIGKILL)
        gg.logf.close()
        bad += [l for l in gg.log_lines() if any(m in l for m in SANITIZER_MARKERS)]
    assert not bad, "sanitizer report in the second greygate's log:\n" + "\n".join(bad[:20])


def greeting_host(port):
    """The host name of the 220 greeting of a new connection to PORT."""
    with RawSMTP(port, timeout=10) as c:
        r = c.greeting()
        assert r.code == 220, r
        return r.texts[0].split()[0]


def ctl_stats(first):
    return subprocess.run([CTL_BIN, "-c", str(first.conf_path), "stats"],
                          capture_output=True, text=True, timeout=15)


def stop(gg):
    """The exit status of GG: it is given 10 s to exit by itself (as a
    refused start does), then sent SIGTERM; None if it had to be killed."""
    rc = gg.wait_exit(10)
    if rc is None:
        gg.term()
        rc = gg.wait_exit(20)
    return rc


@pytest.mark.parametrize("workers", [1, 2])
def test_second_instance_on_same_address_refused(greygate_factory, second, workers, tmp_path):
    pid_file = tmp_path / "greygate.pid"
    first = greygate_factory(workers=workers, pid_file=str(pid_file))
    wait_until(lambda: len(first.events("ready")) == workers, 10, what="workers ready")
    assert ctl_stats(first).returncode == 0
    # the same file but for the greeting: same address, same control socket
    two = second(merge(first.config, {"myhostname": "second.test"}), first.port)
    wait_until(lambda: not two.alive() or len(two.events("ready")) == workers, 10,
               what="the second greygate exits or serves")
    hosts = [greeting_host(first.port) for _ in range(20)]
    rc = stop(two)

    assert hosts.count("gw.test") == 20, \
        f"connections answered by the second greygate: {hosts.count('second.test')} of 20"
    assert rc == 1, f"the second greygate exited with {rc}\n{two.log_text()[-3000:]}"
    refused = [e for e in two.events("listen", result="failed")
               if e.get("reason") == f"another process is listening on 127.0.0.1:{first.port}"]
    assert refused, two.log_text()[-3000:]
    # the first's control socket is still there and still the first's
    r = ctl_stats(first)
    assert r.returncode == 0 and "store=memory" in r.stdout, r.stdout + r.stderr
    # and so is its pid file: the refused one never wrote it, so never removes it
    assert pid_file.exists() and int(pid_file.read_text()) == first.pid


def test_second_instance_on_same_control_socket_refused(greygate_factory, second):
    first = greygate_factory()
    assert ctl_stats(first).returncode == 0
    port = free_port(12600)
    two = second(merge(first.config, {"listen": [f"127.0.0.1:{port}"]}), port)
    wait_until(lambda: not two.alive() or two.events("ready"), 10,
               what="the second greygate exits or serves")
    served = tcp_listening(port)
    rc = stop(two)

    assert rc == 1 and not served, f"exit {rc}, listened: {served}\n{two.log_text()[-3000:]}"
    assert two.events("control", result="failed",
                      reason="another process answers on the control socket"), \
        two.log_text()[-3000:]
    r = ctl_stats(first)
    assert r.returncode == 0 and "store=memory" in r.stdout, r.stdout + r.stderr
    # a stale socket (nobody answering) is no reason to refuse: it is replaced
    first.stop()
    sock = first.config["control_socket"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)
    stale.close()
    third = greygate_factory(config=first.config, port=first.port)
    assert third.events("control", result="listening")
    assert ctl_stats(third).returncode == 0


def test_exit_leaves_a_control_socket_that_is_not_ours(greygate_factory):
    """Whoever replaced our control socket keeps it when we exit."""
    gg = greygate_factory()
    path = gg.config["control_socket"]
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(path)
        other.listen(1)
        ino = os.stat(path).st_ino
        gg.stop()
        assert os.path.exists(path) and os.stat(path).st_ino == ino
