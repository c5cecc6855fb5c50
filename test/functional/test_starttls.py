"""STARTTLS (RFC 3207): offered only with a certificate, TLS 1.2 at least,
the session starts over after it, plaintext pipelined behind STARTTLS is
never executed, and SIGHUP picks up a new certificate."""
import smtplib
import ssl
import subprocess
import warnings

import pytest

from harness.smtp import assert_reply, make_message
from harness.tls import client_ctx, make_cert
from harness.util import CLIENT_ADDR, CLIENT_HELO, token


@pytest.fixture
def tls_gg(greygate_factory, tmp_path):
    cert, key = make_cert(tmp_path, "gw.test")
    return greygate_factory(tls={"cert": cert, "key": key})


def test_not_offered_without_certificate(greygate):
    with greygate.raw() as c:
        c.greeting()
        assert "STARTTLS" not in c.ehlo().text
        assert_reply(c.cmd("STARTTLS"), 502, "5.5.2")


def test_message_over_tls(tls_gg, postfix_backend):
    tok = token()
    with smtplib.SMTP("127.0.0.1", tls_gg.port, local_hostname=CLIENT_HELO,
                      source_address=(CLIENT_ADDR, 0), timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=client_ctx())
        assert code == 220
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.ehlo()
        assert not s.has_extn("starttls")   # not twice
        s.sendmail(f"s-{tok}@sender.example", [f"r-{tok}@test.example"], make_message(tok))
    postfix_backend.wait_mails(tok)
    tx = tls_gg.wait_event("transaction", result="accepted")
    assert tx[-1]["tls"].startswith("TLSv1.")


def test_plaintext_pipelined_after_starttls_is_dropped(tls_gg):
    with tls_gg.raw() as c:
        c.greeting()
        c.ehlo()
        # an attacker in the path appends a command to the client's STARTTLS
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@evil.example>\r\n")
        assert_reply(c.reply(), 220, "2.0.0")
        assert c.buf == b""
        c.sock = client_ctx().wrap_socket(c.sock)
        # the first thing to come back through TLS answers our EHLO; no
        # reply to the injected MAIL ever arrives
        r = c.cmd("EHLO client.example")
        assert_reply(r, 250)
        assert r.lines[0] == "250-gw.test"
        assert_reply(c.cmd("RCPT TO:<r@test.example>"), 503, "5.5.1")   # no MAIL happened
    assert not tls_gg.events("reject", cmd="MAIL")


def test_session_starts_over(tls_gg):
    with tls_gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        assert_reply(c.cmd("STARTTLS"), 503, "5.5.1")     # not inside a transaction
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("STARTTLS"), 220)
        c.sock = client_ctx().wrap_socket(c.sock)
        # HELO forgotten: MAIL needs a new EHLO first
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 503, "5.5.1")
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 502)              # once only
        assert_reply(c.cmd("MAIL FROM:<a@sender.example>"), 250)


def test_tls_older_than_1_2_refused(tls_gg):
    with tls_gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 220)
        ctx = client_ctx()
        # the client is willing (security level 0 lets OpenSSL 3 speak
        # TLS 1.1): only greygate's minimum can make this fail
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, OSError)):
            c.sock = ctx.wrap_socket(c.sock)
            c.cmd("EHLO x")


def test_tls_1_2_accepted(tls_gg):
    with tls_gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 220)
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        c.sock = ctx.wrap_socket(c.sock)
        assert c.sock.version() == "TLSv1.2"
        c.ehlo()


def peer_cn(gg):
    with gg.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 220)
        tls = client_ctx().wrap_socket(c.sock)
        der = tls.getpeercert(binary_form=True)
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                             input=der, capture_output=True, check=True).stdout.decode()
        tls.close()
        return out


def test_sighup_reloads_the_certificate(tls_gg, tmp_path):
    assert "CN = gw.test" in peer_cn(tls_gg)
    cert, key = make_cert(tmp_path, "renewed.test")
    cfg = dict(tls_gg.config)
    cfg["tls"] = {"cert": cert, "key": key}
    mark = tls_gg.log_mark()
    tls_gg.write_config(cfg)
    tls_gg.hup()
    tls_gg.wait_event("reload", since=mark, result="ok")
    assert "CN = renewed.test" in peer_cn(tls_gg)


def test_bad_certificate_refused_by_check(tls_gg, tmp_path):
    cfg = dict(tls_gg.config)
    cfg["tls"] = {"cert": str(tmp_path / "missing.crt"), "key": str(tmp_path / "missing.key")}
    tls_gg.write_config(cfg)
    out = subprocess.run([tls_gg.proc.args[0], "-t", "-c", str(tls_gg.conf_path)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "tls.cert" in out.stderr and str(tls_gg.conf_path) + ":" in out.stderr
