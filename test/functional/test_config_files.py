"""greygate -t on files that are not regular files: an @include of a FIFO
and a list file that is a FIFO are refused at once with FILE:LINE (an old
loader opened them and waited for a writer forever)."""

import os
import subprocess

import pytest

from harness.greygate import default_config, render_config, require_binary


def run_check(path, timeout=10):
    try:
        return subprocess.run([require_binary(), "-t", "-c", str(path)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"greygate -t -c {path} still running after {timeout} s "
                    "(blocked opening a FIFO)")


def good_config_text():
    return render_config(default_config(2525, "127.0.0.1:10025"))


@pytest.mark.parametrize("name, line_fmt, refused_fmt", [
    ("extra.conf", '@include "{}"\n', "@include '{}'"),
    ("relay_domains", 'relay_domains_file = "{}";\n', "relay_domains_file '{}'"),
], ids=["include", "list-file"])
def test_fifo_is_refused(tmp_path, name, line_fmt, refused_fmt):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    text = good_config_text()
    line = text.count("\n") + 1
    conf = tmp_path / "greygate.conf"
    conf.write_text(text + line_fmt.format(fifo))
    r = run_check(conf)
    assert r.returncode != 0
    assert f"{conf}:{line}: {refused_fmt.format(fifo)}: not a regular file" in r.stderr
