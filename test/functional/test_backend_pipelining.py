"""MAIL and the first RCPT reach the backend in one round trip when, and
only when, the backend offers PIPELINING."""

import pytest

from harness.fakes import ScriptedSMTP
from harness.smtp import assert_reply, dot_stuff, make_message


@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_and_first_rcpt_pipelined(greygate_factory, fake_backend, tok, pipelining):
    script = ScriptedSMTP(pipelining=pipelining, watch_mail=True)
    backend = fake_backend("serve", script)
    gg = greygate_factory(upstream=backend, backend={"xclient": False})
    with gg.raw() as c:
        assert_reply(c.send_message(f"s-{tok}@sender.example",
                                    [f"a-{tok}@test.example", f"b-{tok}@test.example"],
                                    dot_stuff(make_message(tok))), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    assert script.rcpt_with_mail == [pipelining]
