"""Errors of the publisher client.

The server's error codes (proto/PROTOCOL.md, section 6) arrive as
InvalError with the code's stable name in .code and the server's message in
.message. Failures of the connection itself use the same class with local
codes, as the C client library does: ECONNREFUSED, ETIMEDOUT, ECLOSED and
EIO (name resolution, TLS, other socket errors), plus EPROTO for bytes from
the server that are not a valid reply.
"""

import re

# Codes after which the same request may succeed later (section 6).
RETRYABLE = frozenset({"EUNAVAIL", "EBUSY", "ESHUTDOWN"})


class InvalError(Exception):
    """An error reply from the server, or a local failure.

    .code is the stable code name ("EINVAL", "ETOOBIG", ...) and .message
    the human-readable text; .retryable is true for EUNAVAIL, EBUSY and
    ESHUTDOWN only (codes a client does not know are not retryable)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def retry_after(self):
        """Seconds the server asked to wait before retrying (an EBUSY for a
        tenant over its rate says "retry after N ms"), or None."""
        m = re.search(r"retry after (\d+) ms", self.message or "")
        return int(m.group(1)) / 1000.0 if m else None

    @property
    def retryable(self):
        return self.code in RETRYABLE


class InvalConnectionError(InvalError, ConnectionError):
    """The connection failed or was closed (by the peer, or by the server
    after a framing error it announced in its "error" notification, whose
    code and message this carries). The client is unusable afterwards:
    every later call raises ECLOSED; connect a new one."""


class InvalTimeoutError(InvalError, TimeoutError):
    """No reply within the timeout (code ETIMEDOUT). The connection stays
    usable: a reply that arrives later is matched by its msgid."""
