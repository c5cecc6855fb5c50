"""The harness of greygate's functional (and end-to-end) tests, by concern:

    util      paths, client addresses, token, wait_until, free ports, /proc
    smtp      RawSMTP, Reply, assert_reply, LineReader, make_message, dot_stuff
    postfix   PostfixBackend (a private Postfix), Mail
    greygate  config rendering, Greygate / GreygateLog, admin endpoint, workers
    fakes     LoopbackServer, FakeBackend, ScriptedSMTP, DnsServer, FakeDns
    redis     Resp, RedisServer, RedisMonitor, HugeReplyRedis
    tls       make_cert, client_ctx

Test modules import from these modules; the pytest fixtures built on them
are in test/functional/conftest.py.
"""
