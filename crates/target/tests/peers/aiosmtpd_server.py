"""A third-party SMTP or LMTP server (aiosmtpd) for madmail-target's tests.

Usage: aiosmtpd_server.py smtp|lmtp [CERT KEY]

With CERT and KEY it offers STARTTLS. Prints "PORT <n>", then one JSON line per message
received. Recipients starting with "unknown" are refused at RCPT; with LMTP, recipients
starting with "full" are refused after DATA. Exits when its standard input closes.
"""

import asyncio
import json
import ssl
import sys

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

LMTP_MODE = sys.argv[1] == "lmtp"


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("unknown"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "mail_options": envelope.mail_options,
                    "rcpts": envelope.rcpt_tos,
                    "tls": session.ssl is not None,
                    "content": envelope.original_content.decode("utf-8", "replace"),
                }
            ),
            flush=True,
        )
        if LMTP_MODE:
            return "\r\n".join(
                "552 5.2.2 over quota" if r.startswith("full") else "250 2.0.0 delivered"
                for r in envelope.rcpt_tos
            )
        return "250 2.0.0 queued"


async def main():
    tls = None
    if len(sys.argv) == 4:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    cls = LMTP if LMTP_MODE else SMTP
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: cls(Handler(), enable_SMTPUTF8=True, tls_context=tls),
        "127.0.0.1",
        0,
    )
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
