"""docker/, checked without a Docker engine: the scripts the containers
run are the ones the namespace topology runs (every other test here), and
this file checks the rest -- the compose files against the Dockerfile, the
env files and the DNS data; the Dockerfile against the repository and the
build; the scripts' syntax; the health check. The images and the stack
themselves run in `make docker-smoke` (docker/smoke.sh, docker/prod-check.sh)
wherever a Docker engine answers."""

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

import topology as T

DOCKER = T.DOCKER_DIR
REPO = T.REPO_ROOT


def compose():
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def dockerfile_stages():
    """{target: [lines]} of docker/Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    stages, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.I)
        if m:
            cur = m.group(2)
            stages[cur] = [line]
        elif cur and line.strip() and not line.lstrip().startswith("#"):
            stages[cur].append(line)
    return stages


def dnsmasq_records():
    mx, a = {}, {}
    for line in (DOCKER / "dns" / "dnsmasq.conf").read_text().splitlines():
        if line.startswith("mx-host="):
            dom, host, pref = line[8:].split(",")
            mx.setdefault(dom, []).append((int(pref), host))
        elif line.startswith("host-record="):
            name, addr = line[12:].split(",")
            a[name] = addr
    return mx, a


def scripts():
    return sorted(DOCKER.glob("*.sh")) + sorted(T.HERE.glob("*.sh"))


# ---- scripts ---------------------------------------------------------------

@pytest.mark.parametrize("script", scripts(), ids=lambda p: p.name)
def test_script_syntax(script):
    shell = "bash" if script.read_text().startswith("#!/bin/bash") else "sh"
    r = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("env_file", ["mx1.env", "mx2.env", "prod.env"])
def test_compose_env_renders_a_valid_greygate_conf(env_file, tmp_path):
    """The configuration the containers would run, exactly (GG_DELAY and
    GG_PROBE_INTERVAL at their compose defaults), passes greygate -t."""
    env = dict(os.environ)
    env.update(T.read_env_file(DOCKER / env_file))
    text = T.run(["sh", str(DOCKER / "greygate-conf.sh")], env=env).stdout
    conf = tmp_path / "greygate.conf"
    conf.write_text(text)
    T.run([T.GREYGATE_BIN, "-t", "-c", str(conf)])
    assert "delay = 300;" in text
    if env["GG_ROLE"] == "backup":
        assert "permit_mx_backup = true;" in text
        assert f'permit_mx_backup_networks = [ "{env["GG_PRIMARY_NETWORKS"]}" ];' in text


def test_greygate_conf_refuses_bad_input():
    base = T.read_env_file(DOCKER / "mx2.env")
    for k, v in [("GG_ROLE", "tertiary"), ("GG_DELAY", "5m"), ("GG_MYHOSTNAME", 'x"y'),
                 ("GG_PRIMARY_NETWORKS", ""), ("GG_STORE_FAILURE", "maybe")]:
        env = dict(os.environ, **base)
        env[k] = v
        r = subprocess.run(["sh", str(DOCKER / "greygate-conf.sh")], env=env,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "greygate-conf.sh:" in r.stderr, (k, v, r.stdout)


@pytest.mark.parametrize("env_file", ["mx1.env", "mx2.env"])
def test_compose_env_gives_a_valid_postfix_conf(env_file, tmp_path):
    """postfix-setup.sh on the main.cf the Dockerfile writes and Debian's
    master.cf, with the containers' environment: postfix check passes."""
    conf = tmp_path / "conf"
    conf.mkdir()
    stage = " ".join(dockerfile_stages()["postfix"])
    lines = re.findall(r"'([a-z_]+ =[^']*)'", stage.split("printf", 1)[1].split(">", 1)[0])
    assert any(l.startswith("compatibility_level") for l in lines), lines
    (conf / "main.cf").write_text("\n".join(lines) + "\n" +
                                  f"queue_directory = {tmp_path}/queue\n"
                                  f"data_directory = {tmp_path}/data\n")
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    env = dict(os.environ)
    env.update(T.read_env_file(DOCKER / env_file))
    env["GG_MAIL_BASE"] = str(tmp_path / "mail")
    T.run(["sh", str(DOCKER / "postfix-setup.sh"), str(conf)], env=env)
    main = T.run(["postconf", "-c", str(conf), "-n"]).stdout
    assert "smtpd_authorized_xclient_hosts = 127.0.0.1" in main
    assert "inet_interfaces = loopback-only" in main
    master = T.run(["postconf", "-c", str(conf), "-M"]).stdout
    assert re.search(r"^127\.0\.0\.1:10025\s+inet\s+n\s+-\s+n\s+-\s+-\s+smtpd", master, re.M)
    assert not re.search(r"^smtp\s+inet", master, re.M)
    if env["GG_ROLE"] == "backup":
        assert "fast_flush_domains = $relay_domains" in main
        assert f"proxy_interfaces = {env['GG_MY_ADDRESSES']}" in main
    (tmp_path / "queue").mkdir()
    (tmp_path / "data").mkdir()
    os.chown(tmp_path / "data", T._user("postfix").pw_uid, T._user("postfix").pw_gid)
    r = subprocess.run(["postfix", "-c", str(conf), "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_postfix_setup_refuses_bad_input(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    base = T.read_env_file(DOCKER / "mx1.env")
    for k, v in [("GG_ROLE", "tertiary"), ("GG_MAILBOXES", "../x@example.test"),
                 ("GG_MAILBOXES", "a@elsewhere.test"), ("GG_BACKEND", "0.0.0.0:10025"),
                 ("GG_DOMAINS", "exa mple..test")]:
        env = dict(os.environ, **base)
        env[k] = v
        r = subprocess.run(["sh", str(DOCKER / "postfix-setup.sh"), str(conf)], env=env,
                           capture_output=True, text=True)
        assert r.returncode != 0 and "postfix-setup.sh:" in r.stderr, (k, v, r.stdout)


# ---- healthcheck -----------------------------------------------------------

def _serve_once(greeting):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        if greeting:
            c.sendall(greeting)
        c.recv(100)
        c.close()
        srv.close()
    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("greeting,ok", [
    (b"220 mx.example ESMTP\r\n", True),
    (b"220-mx.example ESMTP\r\n220 more\r\n", True),
    (b"421 4.3.2 shutting down\r\n", False),
    (b"HTTP/1.0 200 OK\r\n", False),
])
def test_healthcheck(greeting, ok):
    port = _serve_once(greeting)
    r = subprocess.run(["bash", str(DOCKER / "healthcheck.sh"), "127.0.0.1", str(port)],
                       capture_output=True, text=True, timeout=20)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr


def test_healthcheck_closed_port_and_silence():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run(["bash", str(DOCKER / "healthcheck.sh"), "127.0.0.1", str(port)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    port = _serve_once(b"")
    r = subprocess.run(["bash", str(DOCKER / "healthcheck.sh"), "127.0.0.1", str(port)],
                       capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, HEALTHCHECK_TIMEOUT="1"))
    assert r.returncode != 0 and "no greeting" in r.stdout


# ---- Dockerfile ----------------------------------------------------------------

def test_dockerfile_stages():
    st = dockerfile_stages()
    assert {"build", "greygate", "postfix", "redis", "dns", "tools"} <= set(st)
    assert "ARG DEBIAN_RELEASE=bookworm" in (DOCKER / "Dockerfile").read_text()
    # one base image, the one docker/base-image.sh creates without a registry
    for target in ("build", "greygate", "postfix", "redis", "dns", "tools"):
        assert re.match(r"FROM debian:\$\{DEBIAN_RELEASE\}-slim AS", st[target][0]), st[target][0]
    gg = "\n".join(st["greygate"])
    assert re.search(r"^USER greygate$", gg, re.M)
    assert "HEALTHCHECK" in gg and "healthcheck.sh" in gg
    assert "HEALTHCHECK" in "\n".join(st["postfix"])
    # only runtime libraries: no compiler, no -dev package in the runtime image
    assert not re.search(r"\b(gcc|make|libc6-dev|[a-z0-9.+-]+-dev)\b", gg)
    assert "runtime-packages" in gg


def test_dockerfile_copies_exist_and_are_in_the_context():
    # the legacy builder (docker-compose 1.29) reads only the context's own
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = [l[1:].rstrip("/") for l in ignore if l.startswith("!")]
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    copied = []
    for line in text.splitlines():
        m = re.match(r"COPY\s+(?!--from)(.*)", line.strip())
        if not m:
            continue
        srcs = m.group(1).split()[:-1]
        for src in srcs:
            path = src.rstrip("/")
            assert (REPO / path).exists(), f"COPY {src}: not in the repository"
            assert path in allowed, f"COPY {src}: excluded by .dockerignore"
            copied.append(path)
    # every directory the Makefile compiles is copied into the build stage
    mk = (REPO / "Makefile").read_text()
    dirs = set(re.findall(r"\$\(wildcard ([a-z]+)/\*\.c\)", mk)) - {"test"}
    dirs |= {"ctl"} if "ctl/greygate-ctl" in mk else set()
    assert dirs and dirs <= set(copied), (dirs, copied)


def test_build_stage_installs_what_the_makefile_links():
    """Every pkg-config module of the Makefile's PKGS comes from a -dev
    package that the build stage installs."""
    mk = (REPO / "Makefile").read_text()
    mods = re.search(r"^PKGS\s*:?=\s*(.*)$", mk, re.M).group(1).split()
    build = " ".join(dockerfile_stages()["build"])
    for mod in mods:
        pcdir = T.run(["pkg-config", "--variable=pcfiledir", mod]).stdout.strip()
        pc = Path(pcdir) / f"{mod}.pc"
        owner = None
        for cand in (pc, pc.resolve()):
            r = subprocess.run(["dpkg", "-S", str(cand)], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        assert owner, f"no package holds {pc}"
        assert re.search(rf"\b{re.escape(owner)}\b", build), \
            f"{mod}.pc comes from {owner}, which the build stage does not install"


def test_runtime_packages_are_libraries_only():
    out = T.run(["sh", str(DOCKER / "runtime-packages.sh"), T.GREYGATE_BIN,
                 str(Path(T.GREYGATE_BIN).parent / "greygate-ctl")]).stdout.split()
    assert out, "no runtime package found"
    for p in out:
        assert not p.endswith("-dev") and p.startswith("lib"), out
        T.run(["dpkg", "-s", p])
    for must in ("libevent-2.1-7", "libhiredis0.14", "libc-ares2", "libconfig9", "libssl3"):
        assert must in out, out


# ---- compose.yml ---------------------------------------------------------------

def test_compose_is_consistent():
    c = compose()
    svc = c["services"]
    targets = set(dockerfile_stages())
    net = ipaddress.ip_network(c["networks"]["mail"]["ipam"]["config"][0]["subnet"])
    addr = {}
    for name, s in svc.items():
        b = s.get("build")
        if b:
            assert (DOCKER / b["context"] / b["dockerfile"]).resolve() == DOCKER / "Dockerfile"
            assert b["target"] in targets, (name, b["target"])
        for f in s.get("env_file", []):
            assert (DOCKER / f).is_file(), f
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), v
            else:
                assert src in c["volumes"], v
        ip = s.get("networks", {}).get("mail", {}).get("ipv4_address")
        if ip:
            assert ipaddress.ip_address(ip) in net, (name, ip)
            addr[name] = ip
    mx, a = dnsmasq_records()
    assert sorted(mx["example.test"]) == [(10, "mx1.example.test"), (20, "mx2.example.test")]
    for n in ("mx1", "mx2"):
        env = T.read_env_file(DOCKER / f"{n}.env")
        gg = svc[f"{n}-greygate"]
        assert gg["network_mode"] == f"service:{n}"
        assert gg["build"]["target"] == "greygate"
        assert gg["depends_on"][n]["condition"] == "service_healthy"
        assert svc[n]["build"]["target"] == "postfix"
        assert svc[n]["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == "0"
        assert svc[n]["hostname"] == env["GG_MYHOSTNAME"]
        assert env["GG_MY_ADDRESSES"] == addr[n] == a[env["GG_MYHOSTNAME"]]
        assert env["GG_REDIS_HOST"] == addr["redis"]
        assert env["GG_DNS_SERVERS"] == addr["dns"]
        assert svc[n]["dns"] == [addr["dns"]]
        assert env["GG_DOMAINS"] == "example.test"
    mx2 = T.read_env_file(DOCKER / "mx2.env")
    assert mx2["GG_ROLE"] == "backup" and T.read_env_file(DOCKER / "mx1.env")["GG_ROLE"] == "primary"
    primaries = ipaddress.ip_network(mx2["GG_PRIMARY_NETWORKS"])
    assert ipaddress.ip_address(addr["mx1"]) in primaries
    assert ipaddress.ip_address(addr["mx2"]) not in primaries
    # smoke.sh's client and addresses
    smoke = (DOCKER / "smoke.sh").read_text()
    assert f"MX1={addr['mx1']}" in smoke and f"MX2={addr['mx2']}" in smoke
    assert a["client.client.test"] == svc["client"]["networks"]["mail"]["ipv4_address"]
    assert "client.test" in mx


def test_compose_prod_is_consistent():
    """compose.prod.yml: one MX host, greygate in the Postfix container's
    namespace, port 25 published there, the queue, mailboxes, embedded store
    and whitelist on volumes, every setting from prod.env."""
    c = yaml.safe_load((DOCKER / "compose.prod.yml").read_text())
    svc = c["services"]
    assert set(svc) == {"mx", "greygate"}
    assert svc["mx"]["build"]["target"] == "postfix"
    assert svc["greygate"]["build"]["target"] == "greygate"
    assert svc["greygate"]["network_mode"] == "service:mx"
    assert svc["greygate"]["depends_on"]["mx"]["condition"] == "service_healthy"
    assert any(p.endswith(":25") for p in svc["mx"]["ports"]), svc["mx"]["ports"]
    assert svc["mx"]["sysctls"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    mounts = {v.split(":")[1]: v.split(":")[0] for s in svc.values() for v in s["volumes"]}
    for path in ("/var/spool/postfix", "/var/mail/vhosts", "/var/lib/greygate",
                 "/etc/greygate/whitelist"):
        assert mounts.get(path) in c["volumes"], (path, mounts)
    for s in svc.values():
        assert s["env_file"] == ["${GG_ENV_FILE:-prod.env}"]
        assert s["restart"] == "unless-stopped"
    env = T.read_env_file(DOCKER / "prod.env")
    assert env["GG_ROLE"] in ("primary", "backup") and env["GG_REDIS_HOST"]


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed")
@pytest.mark.parametrize("name", ["compose.yml", "compose.prod.yml"])
def test_docker_compose_accepts(name):
    """docker-compose 1.29 (Debian bookworm's) reads the file as it is: no
    keys only compose v2 knows (`name:`, `depends_on: restart:`)."""
    r = subprocess.run(["docker-compose", "-f", str(DOCKER / name), "--profile", "smoke",
                        "config", "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
