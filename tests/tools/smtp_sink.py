#!/usr/bin/env python3
"""A real SMTP server for the tests: receives mail and writes each message to a file.

    python3 tests/tools/smtp_sink.py --port 0 --out DIR
        [--auth USER:PASSWORD] [--tls-cert CERT --tls-key KEY [--require-starttls]]

* Listens on 127.0.0.1:PORT (0 = a free port) with aiosmtpd, and once it accepts connections
  prints one line, `listening 127.0.0.1:PORT`, to stdout.
* Every message is written to `DIR/<n>.eml` (n = 1, 2, …): the raw message as received, with
  `X-Envelope-From` and `X-Envelope-To` headers prepended. Each file is written under a temporary
  name and then renamed, so a reader never sees half a message.
* `--auth USER:PASSWORD`: AUTH PLAIN and LOGIN are offered (also without TLS) and required before
  MAIL FROM; only those credentials are accepted, any others get `535`.
* `--tls-cert/--tls-key`: STARTTLS is offered; with `--require-starttls` the client must use it
  before anything else (and then AUTH is only accepted over TLS).

Used by `custos_testkit::SmtpSink`; `cargo xtask test` installs aiosmtpd (`pip install aiosmtpd`).
"""

import argparse
import asyncio
import itertools
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    """aiosmtpd handler: accepts every recipient and stores every message."""

    def __init__(self, out: str):
        self.out = out
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        # `original_content` is the message exactly as the client sent it (dot-unstuffed).
        raw = envelope.original_content or b""
        header = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        tmp = os.path.join(self.out, f".{n}.eml.tmp")
        with open(tmp, "wb") as f:
            f.write(header + raw)
        # Atomic on one filesystem: the reader lists `*.eml` only.
        os.replace(tmp, os.path.join(self.out, f"{n}.eml"))
        return "250 OK message accepted"


def authenticator_for(user: str, password: str):
    """An aiosmtpd authenticator accepting exactly USER/PASSWORD (for PLAIN and LOGIN)."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers, `235` on success and
        # `535 5.7.8 Authentication credentials invalid` otherwise.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True, help="directory for the received messages")
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--require-starttls", action="store_true")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    os.makedirs(args.out, exist_ok=True)
    # aiosmtpd's own log ("mail.log") warns about settings chosen on purpose here: errors only.
    logging.basicConfig(level=logging.ERROR)

    options = {"hostname": "smtp-sink.test"}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        options["tls_context"] = context
        options["require_starttls"] = args.require_starttls
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            parser.error("--auth takes USER:PASSWORD")
        options["authenticator"] = authenticator_for(user, password)
        options["auth_required"] = True
        # AUTH over plain TCP is allowed unless STARTTLS is mandatory.
        options["auth_require_tls"] = bool(args.tls_cert and args.require_starttls)
        # …which aiosmtpd warns about on every start: deliberate here, a sink for tests.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

    handler = Sink(args.out)
    loop = asyncio.get_running_loop()
    # One SMTP protocol instance per connection (aiosmtpd's Controller cannot use port 0).
    server = await loop.create_server(lambda: SMTP(handler, loop=loop, **options), "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
