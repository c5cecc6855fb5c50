"""Prints the Debian mirror this machine's apt uses for bookworm (not the
security archive), from /etc/apt/sources.list and sources.list.d, one-line
and deb822 formats; nothing when there is none. For test/deb/run.sh."""
import glob
import re

SUITE = "bookworm"


def one_line(text):
    for line in text.splitlines():
        f = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(f) >= 3 and f[0] == "deb" and f[2] == SUITE:
            yield f[1]


def deb822(text):
    for para in re.split(r"\n\s*\n", text):
        fields = {}
        for line in para.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m:
                fields[m.group(1).lower()] = m.group(2).split()
        if SUITE in fields.get("suites", []) and "deb" in fields.get("types", []):
            yield from fields.get("uris", [])


def main():
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in files:
        try:
            text = open(path).read()
        except OSError:
            continue
        found = deb822(text) if path.endswith(".sources") else one_line(text)
        for uri in found:
            print(uri)
            return


main()
