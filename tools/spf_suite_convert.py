#!/usr/bin/python3
"""Turns the RFC 7208 SPF test suite (YAML) into the line format that
test/unit/test_spf_suite.c reads, so the unit test needs no YAML parser:

  S <tab> scenario description
  Z <tab> name <tab> TYPE <tab> field ...   (TYPE: A AAAA MX PTR TXT CNAME;
                                             TIMEOUT alone: the name times out)
  T <tab> test <tab> helo <tab> host <tab> mailfrom <tab> result[,result]
    <tab> explanation (- when the suite gives none)

Fields are escaped: backslash, tab, newline and bytes outside 0x20-0x7e
as \\xHH. The suite's SPF-type records are served as TXT (RFC 7208 looks
up TXT only) unless the name has TXT records of its own; a TXT "NONE"
means no TXT record at all (the suite's convention).

  python3 tools/spf_suite_convert.py test/data/spf/rfc7208-tests.yml \
      > test/data/spf/rfc7208-tests.txt

Needs PyYAML (Debian python3-yaml); only this tool does, not the tests.
"""
import sys

import yaml


def esc(v):
    b = str(v).encode('utf-8')
    out = []
    for c in b:
        if c == 0x5c or c < 0x20 or c > 0x7e:
            out.append('\\x%02x' % c)
        else:
            out.append(chr(c))
    return ''.join(out)


def strings(v):
    return [esc(s) for s in (v if isinstance(v, list) else [v])]


def main(path):
    out = sys.stdout
    with open(path, encoding='utf-8') as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        out.write('S\t%s\n' % esc(' '.join(d['description'].split())))
        for name, recs in d.get('zonedata', {}).items():
            has_txt = any(isinstance(r, dict) and 'TXT' in r for r in recs)
            for r in recs:
                if r == 'TIMEOUT':
                    out.write('Z\t%s\tTIMEOUT\n' % esc(name))
                    continue
                (t, v), = r.items()
                if t == 'SPF':
                    if has_txt:
                        continue
                    t = 'TXT'
                if t == 'TXT' and v == 'NONE':
                    continue
                if t == 'TXT':
                    fields = strings(v)
                elif t == 'MX':
                    fields = [esc(v[0]), esc(v[1])]
                else:
                    fields = [esc(v)]
                out.write('\t'.join(['Z', esc(name), t] + fields) + '\n')
        for tname, t in d['tests'].items():
            res = t['result'] if isinstance(t['result'], list) else [t['result']]
            out.write('\t'.join(['T', esc(tname), esc(t['helo']), esc(t['host']),
                                 esc(t['mailfrom']), ','.join(res),
                                 esc(t.get('explanation', '-'))]) + '\n')


if __name__ == '__main__':
    main(sys.argv[1])
