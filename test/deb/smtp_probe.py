"""For test/deb/run.sh: `smtp_probe.py HOST PORT` sends one new triplet
from 127.0.0.2 and exits 0 when its RCPT gets 450 (greylisted);
`smtp_probe.py --free-port` prints a free loopback TCP port."""
import smtplib
import socket
import sys

if sys.argv[1] == "--free-port":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    sys.exit(0)

smtp = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=("127.0.0.2", 0), timeout=60)
smtp.ehlo("client.deb-test.example")
code, text = smtp.mail("alice@sender.example")
assert code == 250, (code, text)
code, text = smtp.rcpt("bob@example.org")
print(f"deb-test: RCPT -> {code} {text.decode()}")
smtp.quit()
sys.exit(0 if code == 450 else 1)
