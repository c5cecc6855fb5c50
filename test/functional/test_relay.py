"""Relay authorisation: local_domains, relay_domains(_file), mynetworks, and
the paths that must never end in the backend accepting mail for a foreign
domain."""

import pytest

from harness.smtp import assert_reply, dot_stuff, make_message
from harness.util import CLIENT_ADDR


def deliver(gg, backend, tok, rcpts, source=CLIENT_ADDR):
    """One transaction to RCPTS (all must be accepted); waits for delivery."""
    with gg.raw(source=source) as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250, "2.1.0")
        for r in rcpts:
            assert_reply(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    mails = backend.wait_mails(tok, count=len(rcpts))
    assert sorted(m.header("delivered-to")[0] for m in mails) == sorted(rcpts)


def assert_denied(gg, backend, rcpts, source=CLIENT_ADDR, non_fqdn=False):
    """NON_FQDN: a recipient without a domain may instead be refused as such
    (reject_non_fqdn_recipient, 504 5.5.2, checked before relay access)."""
    mark = backend.log_mark()
    with gg.raw(source=source) as c:
        port = c.local_port
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<s@sender.example>"), 250, "2.1.0")
        for r in rcpts:
            reply = c.cmd(f"RCPT TO:{r}")
            if non_fqdn and reply.code == 504:
                assert_reply(reply, 504, "5.5.2")
            else:
                assert_reply(reply, 554, "5.7.1", contains="Relay access denied")
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
        assert_reply(c.cmd("QUIT"), 221)
    # A denied recipient never reaches the backend: this session (XCLIENT
    # PORT = our port, logged thanks to smtpd_client_port_logging) never
    # shows up in the backend's log.
    backend.sync_log()
    log = backend.log(mark)
    assert f"[{source}]:{port}" not in log, log
    return reply


def test_local_domain_is_accepted(greygate, postfix_backend, tok):
    deliver(greygate, postfix_backend, tok, [f"a-{tok}@test.example", f"b-{tok}@TEST.Example"])


def test_relay_domain_is_accepted(greygate, postfix_backend, tok):
    deliver(greygate, postfix_backend, tok, [f"a-{tok}@relay.example"])


def test_foreign_domain_is_denied(greygate, postfix_backend):
    r = assert_denied(greygate, postfix_backend, ["<victim@foreign.example>"])
    assert "<victim@foreign.example>" in r.text


@pytest.mark.parametrize("rcpt", [
    "<victim@sub.test.example>",               # subdomain of a local domain
    "<victim@eviltest.example>",               # suffix that is not a subdomain
    "<victim@test.example.foreign.example>",
    "<@test.example:victim@foreign.example>",  # source route: the real domain is the last
    "<@test.example,@relay.example:victim@foreign.example>",
    "victim@foreign.example",                  # no brackets
    "<victim@[127.0.0.1]>",                    # address literal
    "<victim>",                                # no domain at all
])
def test_tricky_foreign_recipients_are_denied(greygate, postfix_backend, rcpt):
    assert_denied(greygate, postfix_backend, [rcpt], non_fqdn=(rcpt == "<victim>"))


def test_relay_domains_file(greygate_factory, postfix_backend, tmp_path, tok):
    f = tmp_path / "relay_domains"
    f.write_text("# domains we relay for\n\nfromfile.example\n  # indented comment\n")
    gg = greygate_factory(relay_domains=None, relay_domains_file=str(f))
    deliver(gg, postfix_backend, tok, [f"a-{tok}@fromfile.example", f"b-{tok}@test.example"])
    assert_denied(gg, postfix_backend, ["<x@relay.example>", "<x@foreign.example>"])


def test_mynetworks_may_relay(greygate_factory, postfix_backend, tok):
    gg = greygate_factory(mynetworks=["127.0.0.5/32"])
    # elsewhere.example is neither local nor relay for greygate
    deliver(gg, postfix_backend, tok, [f"a-{tok}@elsewhere.example"], source="127.0.0.5")
    assert_denied(gg, postfix_backend, ["<x@foreign.example>"], source="127.0.0.6")


def test_empty_mynetworks_does_not_trust_loopback(greygate, postfix_backend):
    # the test configuration sets mynetworks = [] explicitly; 127.0.0.1 is
    # then a stranger like any other
    assert_denied(greygate, postfix_backend, ["<x@foreign.example>"], source="127.0.0.1")


def test_denied_recipient_does_not_abort_transaction(greygate, postfix_backend, tok):
    with greygate.raw() as c:
        c.greeting()
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<s-{tok}@sender.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<v-{tok}@foreign.example>"), 554, "5.7.1")
        assert_reply(c.cmd(f"RCPT TO:<a-{tok}@test.example>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<w-{tok}@foreign.example>"), 554, "5.7.1")
        assert_reply(c.cmd("DATA"), 354)
        c.send(dot_stuff(make_message(tok)))
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    [m] = postfix_backend.wait_mails(tok)
    assert m.header("delivered-to") == [f"a-{tok}@test.example"]
    postfix_backend.wait_log(rf"to=<a-{tok}@test\.example>.*status=sent")
    postfix_backend.sync_log()
    assert f"-{tok}@foreign.example" not in postfix_backend.log()
