#!/usr/bin/python3
"""A stand-in for `docker` that lets docker/smoke.sh run against the
namespace topology instead of the compose stack (there is no Docker engine
on the test machines). Only what smoke.sh uses is understood:

    docker compose [-f FILE] [--profile P] build|up|down ...  -> nothing to do
    docker compose ... run --rm -T client ARGS...  -> swaks ARGS in the sender's
                                                      namespace (--server mapped)
    docker compose ... exec -T SERVICE CMD...      -> CMD here, with the
                                                      container's paths mapped
    docker compose ... logs [--no-color] [--tail=N] SERVICE... -> the logs

FAKE_DOCKER (JSON) says how: {"sender_ns": NS, "servers": {compose IP:
namespace IP}, "paths": {container path: host path}, "logs": {service: file}}.
"""

import json
import os
import sys


def main(argv):
    cfg = json.loads(os.environ["FAKE_DOCKER"])
    args = argv[1:]
    if not args or args[0] != "compose":
        print(f"fake docker: only `docker compose` is known, not {args}", file=sys.stderr)
        return 2
    args = args[1:]
    while args and args[0] in ("-f", "--file", "--profile", "-p", "--project-name"):
        args = args[2:]
    if not args:
        return 2
    cmd, rest = args[0], args[1:]
    if cmd in ("build", "up", "down", "pull"):
        print(f"fake docker: compose {cmd}: nothing to do (the namespaces are up)",
              file=sys.stderr)
        return 0
    if cmd == "run":
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        service, rest = rest[0], rest[1:]
        if service != "client":
            return 2
        out = []
        for i, a in enumerate(rest):
            if i > 0 and rest[i - 1] == "--server":
                host, _, port = a.partition(":")
                a = cfg["servers"].get(host, host) + (f":{port}" if port else "")
            out.append(a)
        os.execvp("ip", ["ip", "netns", "exec", cfg["sender_ns"], "swaks", *out])
    if cmd == "exec":
        while rest and rest[0].startswith("-"):
            rest = rest[1:]
        service, rest = rest[0], rest[1:]
        mapped = []
        for a in rest:
            for cpath, hpath in cfg["paths"].get(service, {}).items():
                if a.startswith(cpath):
                    a = hpath + a[len(cpath):]
            mapped.append(a)
        os.execvp(mapped[0], mapped)
    if cmd == "logs":
        services = [a for a in rest if not a.startswith("-")]
        for s in services:
            path = cfg["logs"].get(s)
            if path and os.path.exists(path):
                with open(path, "rb") as f:
                    sys.stdout.buffer.write(f.read())
        return 0
    print(f"fake docker: compose {cmd} is not known", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
