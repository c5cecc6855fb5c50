"""`make install` as an administrator sees it: the tree it lays out under
DESTDIR (programs, man pages, unit, configuration), the installed
configuration (a production one that `greygate -t` accepts), man pages that
`mandoc -T lint` finds clean, a second install that keeps an edited
configuration, and `make uninstall`.

The install uses the build the other tests use (GREYGATE_BIN's directory
as BUILD), so it builds nothing new."""

import os
import re
import shutil
import subprocess

import pytest

from harness.util import GREYGATE_BIN, REPO_ROOT

BUILD = os.path.dirname(os.path.abspath(GREYGATE_BIN))

TREE = {
    "etc/greygate/greygate.conf",
    "usr/local/lib/systemd/system/greygate.service",
    "usr/local/sbin/greygate",
    "usr/local/sbin/greygate-ctl",
    "usr/local/share/man/man5/greygate.conf.5",
    "usr/local/share/man/man8/greygate-ctl.8",
    "usr/local/share/man/man8/greygate.8",
}
CONF = "etc/greygate/greygate.conf"


def make(target, stage, **vars):
    args = ["make", "-C", str(REPO_ROOT), "--no-print-directory", target,
            f"BUILD={BUILD}", f"DESTDIR={stage}"] + [f"{k}={v}" for k, v in vars.items()]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"make {target} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def files(stage):
    out = subprocess.run(["find", str(stage), "-type", "f"], capture_output=True,
                         text=True, check=True).stdout.split()
    return {os.path.relpath(p, stage) for p in out}


@pytest.fixture
def stage(tmp_path):
    return tmp_path / "stage"


def test_install_tree(stage):
    make("install", stage)
    assert files(stage) == TREE
    for prog in ("greygate", "greygate-ctl"):
        assert os.access(stage / "usr/local/sbin" / prog, os.X_OK)
    unit = (stage / "usr/local/lib/systemd/system/greygate.service").read_text()
    assert "ExecStart=/usr/local/sbin/greygate -c /etc/greygate/greygate.conf" in unit
    assert "ConditionPathExists=!/etc/greygate/unconfigured" in unit
    r = subprocess.run([str(stage / "usr/local/sbin/greygate"), "-V"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("greygate ")


def test_installed_config_is_production(stage):
    make("install", stage)
    conf = (stage / CONF).read_text()
    r = subprocess.run([GREYGATE_BIN, "-t", "-c", str(stage / CONF)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # every line of tools/installed-conf.sed matched conf/greygate.conf
    for line in ('user = "greygate"; group = "greygate"; pid_file = "/run/greygate/greygate.pid";',
                 'control_socket = "/run/greygate/control.sock";',
                 '  file = "/var/lib/greygate/greylist.db";',
                 'reject_unknown_sender_domain = true;'):
        assert line + "\n" in conf, line
    assert re.search(r"^  delay = 300; ", conf, re.M)
    assert not re.search(r"^run_as_root", conf, re.M)
    for gone in ("build/", "whoever starts it", "Off in this"):
        assert gone not in conf, gone


def test_man_pages_lint_clean(stage):
    make("install", stage)
    man = stage / "usr/local/share/man"
    pages = sorted(str(p) for p in man.glob("man*/*"))
    assert len(pages) == 3
    r = subprocess.run(["mandoc", "-T", "lint", *pages], capture_output=True, text=True,
                       timeout=60)
    problems = []
    for line in (r.stdout + r.stderr).splitlines():
        # mandoc looks cross-references up in the system's manual database,
        # which a staged install is not in: see that each is a staged page.
        m = re.search(r"referenced manual not found: Xr (\S+) (\d)", line)
        if m and (man / f"man{m.group(2)}" / f"{m.group(1)}.{m.group(2)}").is_file():
            continue
        problems.append(line)
    assert not problems, "\n".join(problems)
    # each renders to text: its title, its name line, its sections
    sections = {"greygate.8": ("SYNOPSIS", "SIGNALS", "FILES", "EXIT STATUS", "EXAMPLES"),
                "greygate-ctl.8": ("SYNOPSIS", "EXIT STATUS", "EXAMPLES"),
                "greygate.conf.5": ("SETTINGS", "FILES", "EXAMPLES")}
    for page in pages:
        name = os.path.basename(page)
        text = subprocess.run(["mandoc", "-T", "ascii", page], capture_output=True, text=True,
                              check=True, timeout=60).stdout
        text = re.sub(r".\x08", "", text)          # overstrike: bold, underline
        title = name.rsplit(".", 1)
        assert text.startswith(f"{title[0].upper()}({title[1]})"), name
        assert f"{title[0]} - " in text, name
        for sec in sections[name]:
            assert f"\n{sec}\n" in text, (name, sec)


def test_second_install_keeps_edited_config(stage):
    make("install", stage)
    conf = stage / CONF
    edited = conf.read_text().replace('myhostname = "mx.example.org";',
                                      'myhostname = "mx.edited.example";')
    assert "mx.edited.example" in edited
    conf.write_text(edited)
    out = make("install", stage)
    assert f"keeping {conf}" in out
    assert conf.read_text() == edited
    assert files(stage) == TREE


def test_uninstall(stage):
    make("install", stage)
    make("uninstall", stage)
    assert files(stage) == set()
    assert not (stage / "etc/greygate").exists()


def test_uninstall_keeps_edited_config(stage):
    make("install", stage)
    conf = stage / CONF
    conf.write_text(conf.read_text() + "# local change\n")
    out = make("uninstall", stage)
    assert "it was changed" in out
    assert files(stage) == {CONF}


def test_prefix(stage):
    make("install", stage, PREFIX="/opt/gg", SYSCONFDIR="/opt/gg/etc")
    got = files(stage)
    assert "opt/gg/sbin/greygate" in got and "opt/gg/etc/greygate/greygate.conf" in got
    unit = (stage / "opt/gg/lib/systemd/system/greygate.service").read_text()
    assert "ExecStart=/opt/gg/sbin/greygate -c /opt/gg/etc/greygate/greygate.conf" in unit
