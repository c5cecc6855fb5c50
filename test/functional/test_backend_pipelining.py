"""MAIL and the first RCPT reach the backend in one round trip when, and
only when, the backend offers PIPELINING."""

import socket

import pytest

from conftest import LineReader, assert_reply, dot_stuff, make_message


def scripted_smtp(pipelining, rcpt_with_mail):
    """A minimal SMTP server for FakeBackend('serve', ...) that appends to
    RCPT_WITH_MAIL, for every MAIL, whether the RCPT after it had arrived
    before MAIL was answered."""
    ehlo = b"250-sink.test\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") \
        + b"250 8BITMIME\r\n"

    def serve(conn):
        conn.settimeout(10)
        reader = LineReader(conn)
        line = reader.line

        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                cmd = line().upper()
                if cmd.startswith(b"EHLO"):
                    conn.sendall(ehlo)
                elif cmd.startswith(b"MAIL"):
                    # whatever else arrives within a moment came with MAIL
                    conn.settimeout(0.5)
                    try:
                        reader.wait_line()
                    except socket.timeout:
                        pass
                    conn.settimeout(10)
                    rcpt_with_mail.append(reader.buf.upper().startswith(b"RCPT"))
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif cmd.startswith(b"RCPT"):
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    while line() != b".":
                        pass
                    conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
    return serve


@pytest.mark.parametrize("pipelining", [True, False])
def test_mail_and_first_rcpt_pipelined(greygate_factory, fake_backend, tok, pipelining):
    rcpt_with_mail = []
    backend = fake_backend("serve", scripted_smtp(pipelining, rcpt_with_mail))
    gg = greygate_factory(upstream=backend, backend={"xclient": False})
    with gg.raw() as c:
        assert_reply(c.send_message(f"s-{tok}@sender.example",
                                    [f"a-{tok}@test.example", f"b-{tok}@test.example"],
                                    dot_stuff(make_message(tok))), 250, "2.0.0")
        assert_reply(c.cmd("QUIT"), 221)
    assert rcpt_with_mail == [pipelining]
