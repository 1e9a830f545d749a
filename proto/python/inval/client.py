"""A client for inval-publisher: MessagePack-RPC over TCP or TLS, as
specified in proto/PROTOCOL.md (and for a worker's admin port, which
serves stats and ping).

    with Client("127.0.0.1", 7700, token="s3cret") as c:
        c.invalidate([key("user:42"), prefix("session:42:", mode="soft")])
        pending = [c.invalidate_async([key(f"item:{i}")]) for i in range(1000)]
        acks = [p.result() for p in pending]

One Client is one connection. It connects and sends hello in its
constructor, pipelines requests (invalidate_async and send return a
Pending whose result() waits for the reply matched by msgid, in whatever
order the server answers), and keeps at most max_outstanding requests
without a reply: a send beyond that first reads replies, so that a long
pipeline never stalls on the server's flow control. Calls are serialized
by an internal lock, so a client may be shared between threads, but it
carries one request at a time on the wire per caller; use one client per
thread for parallel throughput.

Errors raise InvalError (see errors.py): error replies with the server's
code, InvalConnectionError when the connection is gone (the client is then
broken for good), InvalTimeoutError when a reply is late.
"""

import socket
import ssl
import threading
import time

import msgpack

from .errors import InvalConnectionError, InvalError, InvalTimeoutError

PROTO_VERSION = 1
DEFAULT_PORT = 7700
REQUEST, RESPONSE, NOTIFY = 0, 1, 2


def key(target, mode=None):
    """An event deleting exactly the key target (str or bytes)."""
    return _event("key", target, mode)


def prefix(target, mode=None):
    """An event deleting every key whose bytes start with target."""
    return _event("prefix", target, mode)


def pattern(target, mode=None):
    """An event deleting every key matching the glob target (SCAN MATCH
    semantics)."""
    return _event("pattern", target, mode)


def _event(kind, target, mode):
    # Only the three fields of section 9 are sent: the server refuses
    # unknown ones, and a missing mode means "hard".
    e = {"kind": kind, "target": target}
    if mode is not None:
        e["mode"] = mode
    return e


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


class Pending:
    """A request sent without waiting; result() waits for its reply."""

    def __init__(self, client, msgid, method):
        self._client = client
        self.msgid = msgid
        self.method = method

    def result(self, timeout=None):
        """The reply's result. Raises InvalError with the server's code for
        an error reply, InvalTimeoutError when it does not arrive within
        timeout seconds (default: the client's timeout; call again to keep
        waiting), InvalConnectionError when the connection is gone."""
        return self._client._wait(self.msgid, timeout)


class Client:
    """A connection to inval-publisher (see the module documentation).

    host, port: the publisher's address. token: the auth token sent in
    hello. client_name: announced in hello. hello=False skips the handshake
    (it is required only with authentication; without it the client does
    not know the server's limits). timeout: seconds each call waits for
    its reply; connect_timeout: seconds for connect, TLS handshake and
    hello. TLS: tls=True verifies the server against tls_ca_file (or the
    system's CAs) and tls_server_name (default host), unless tls_verify is
    false; tls_cert_file (and tls_key_file, when the key is apart) is the
    client certificate for a server that requires one (mTLS); ssl_context
    replaces all of these with a ready SSLContext.
    max_outstanding bounds the requests in flight (at most 4096, the
    server's per-connection limit).

    Raises InvalConnectionError (ECONNREFUSED, ETIMEDOUT, EIO) when the
    connection cannot be made, and InvalError when hello is refused (EAUTH
    for a wrong token); a server without hello (a worker's admin port
    answers ENOMETHOD) is accepted with an empty .server."""

    def __init__(self, host="127.0.0.1", port=DEFAULT_PORT, *, token=None,
                 client_name="inval-python", hello=True, timeout=5.0,
                 connect_timeout=5.0, tls=False, tls_ca_file=None,
                 tls_verify=True, tls_server_name=None, ssl_context=None,
                 tls_cert_file=None, tls_key_file=None,
                 max_outstanding=1024):
        if not 1 <= max_outstanding <= 4096:
            raise ValueError("max_outstanding must be within 1 ... 4096 "
                             f"(got {max_outstanding})")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_outstanding = max_outstanding
        self.server = {}
        self._lock = threading.RLock()
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                          unicode_errors="surrogateescape")
        self._next_id = 1
        self._outstanding = set()
        self._done = {}
        self._abandoned = set()
        self._broken = None
        self._sock = self._connect(connect_timeout, tls, tls_ca_file,
                                   tls_verify, tls_server_name, ssl_context,
                                   (tls_cert_file, tls_key_file))
        if hello or token is not None:
            try:
                self._handshake(token, client_name, connect_timeout)
            except BaseException:
                self.close()
                raise

    # ---- connection --------------------------------------------------

    def _connect(self, connect_timeout, tls, cafile, verify, server_name,
                 ctx, client_cert=(None, None)):
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port),
                                            timeout=connect_timeout)
        except ConnectionRefusedError as exc:
            raise InvalConnectionError(
                "ECONNREFUSED", f"cannot connect to {where}: "
                f"{exc.strerror or exc}") from None
        except socket.timeout:
            raise InvalConnectionError(
                "ETIMEDOUT", f"cannot connect to {where}: timed out "
                f"after {connect_timeout} s") from None
        except OSError as exc:
            raise InvalConnectionError(
                "EIO", f"cannot connect to {where}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not tls and ctx is None:
            return sock
        if ctx is None:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if client_cert[0] is not None:
                # For a server with tls-client-ca (mTLS); the certificate
                # may also name this client's tenant.
                ctx.load_cert_chain(client_cert[0], client_cert[1])
        try:
            return ctx.wrap_socket(sock,
                                   server_hostname=server_name or self.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise InvalConnectionError(
                "EIO", f"cannot connect to {where}: TLS certificate "
                f"verification failed: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            code = "ETIMEDOUT" if isinstance(exc, socket.timeout) else "EIO"
            raise InvalConnectionError(
                code, f"cannot connect to {where}: TLS handshake: {exc}"
            ) from None

    def _handshake(self, token, client_name, timeout):
        params = {"proto": PROTO_VERSION, "client": client_name}
        if token is not None:
            params["token"] = token
        try:
            self.server = self.call("hello", params, timeout=timeout)
        except InvalError as exc:
            if exc.code != "ENOMETHOD" or token is not None:
                raise
            self.server = {}

    def close(self):
        """Closes the connection; later calls raise ECLOSED. Idempotent."""
        with self._lock:
            if self._broken is None:
                self._broken = InvalConnectionError(
                    "ECLOSED", "the client was closed")
            try:
                self._sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- generic calls -----------------------------------------------

    def send(self, method, *params):
        """Sends the request [0, msgid, method, [params...]] without
        waiting; returns its Pending. Raises InvalError ETOOBIG (nothing
        sent) when the request is bigger than the server's
        max_message_bytes, InvalConnectionError when the connection is
        gone, InvalTimeoutError when the outstanding bound stays full."""
        with self._lock:
            self._check()
            deadline = time.monotonic() + self.timeout
            while len(self._outstanding) >= self.max_outstanding:
                self._read_some(deadline)
            msgid = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            data = _pack([REQUEST, msgid, method, list(params)])
            self._check_size(data)
            self._send(data)
            self._outstanding.add(msgid)
            return Pending(self, msgid, method)

    def notify(self, method, *params):
        """Sends the notification [2, method, [params...]]; the server never
        answers it. Raises like send()."""
        with self._lock:
            self._check()
            data = _pack([NOTIFY, method, list(params)])
            self._check_size(data)
            self._send(data)

    def call(self, method, *params, timeout=None):
        """Sends a request and returns its result (see Pending.result).
        After a timeout the late reply is discarded when it arrives."""
        pending = self.send(method, *params)
        try:
            return pending.result(timeout)
        except InvalTimeoutError:
            with self._lock:
                self._abandoned.add(pending.msgid)
            raise

    # ---- methods -----------------------------------------------------

    def hello(self, token=None, client_name="inval-python"):
        """Sends hello again (say, with a token after EAUTH); returns and
        stores the server's hello result."""
        params = {"proto": PROTO_VERSION, "client": client_name}
        if token is not None:
            params["token"] = token
        self.server = self.call("hello", params)
        return self.server

    def invalidate(self, events, timeout=None):
        """Sends the events (maps made by key(), prefix(), pattern()) in one
        request and waits for the ack {"id": str, "accepted": count, "ids":
        [[shard, entry id], ...]}: "ids" names the log shard entries that
        hold the events, one per shard they went to (ascending shards; on a
        standalone server [[0, id]]), and "id" is the newest of those ids
        (PROTOCOL.md section 5). All or nothing: an invalid event fails the
        request with EINVAL."""
        return self.invalidate_async(events).result(timeout)

    def invalidate_async(self, events):
        """Pipelined invalidate: returns a Pending for the ack."""
        return self.send("invalidate", list(events))

    def notify_invalidate(self, events):
        """Fire-and-forget invalidate (a notification, never acked)."""
        self.notify("invalidate", list(events))

    def stats(self, timeout=None):
        """The server's stats map (service/STATS.md, workers/STATS.md)."""
        return self.call("stats", timeout=timeout)

    def ping(self, timeout=None):
        """"PONG" from a live server."""
        return self.call("ping", timeout=timeout)

    # ---- internals (called with self._lock held) ----------------------

    def _check(self):
        if self._broken is not None:
            raise InvalConnectionError(
                "ECLOSED", f"the connection is closed ({self._broken})")

    def _check_size(self, data):
        limit = self.server.get("max_message_bytes") if self.server else None
        if isinstance(limit, int) and len(data) > limit:
            raise InvalError("ETOOBIG", f"the request is {len(data)} bytes, "
                             f"over the server's limit of {limit}")

    def _break(self, exc):
        if self._broken is None:
            self._broken = exc
        try:
            self._sock.close()
        except OSError:
            pass
        raise exc

    def _send(self, data):
        self._sock.settimeout(self.timeout)
        try:
            self._sock.sendall(data)
        except socket.timeout:
            self._break(InvalConnectionError(
                "ETIMEDOUT", f"sending to {self.host}:{self.port} made no "
                f"progress for {self.timeout} s"))
        except OSError as exc:
            self._break(InvalConnectionError(
                "ECLOSED", f"sending to {self.host}:{self.port}: {exc}"))

    def _wait(self, msgid, timeout):
        with self._lock:
            deadline = time.monotonic() + (self.timeout if timeout is None
                                           else timeout)
            while msgid not in self._done:
                if msgid not in self._outstanding:
                    raise ValueError(f"msgid {msgid} is not outstanding")
                self._check()
                self._read_some(deadline)
            err, result = self._done.pop(msgid)
            if err is not None:
                raise _reply_error(err)
            return result

    def _read_some(self, deadline):
        """Reads one chunk and dispatches the messages it completes."""
        self._check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InvalTimeoutError("ETIMEDOUT", "no reply from "
                                    f"{self.host}:{self.port} in time")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            raise InvalTimeoutError("ETIMEDOUT", "no reply from "
                                    f"{self.host}:{self.port} in time"
                                    ) from None
        except OSError as exc:
            self._break(InvalConnectionError(
                "ECLOSED", f"reading from {self.host}:{self.port}: {exc}"))
        if not data:
            self._break(InvalConnectionError(
                "ECLOSED", f"{self.host}:{self.port} closed the connection"))
        self._unpacker.feed(data)
        try:
            for msg in self._unpacker:
                self._dispatch(msg)
        except (ValueError, msgpack.UnpackException) as exc:
            self._break(InvalConnectionError(
                "EPROTO", f"undecodable reply from the server: {exc}"))

    def _dispatch(self, msg):
        if not isinstance(msg, (list, tuple)) or not msg:
            self._break(InvalConnectionError(
                "EPROTO", f"unexpected message from the server: {msg!r:.80}"))
        if msg[0] == RESPONSE and len(msg) == 4:
            msgid = msg[1]
            if msgid in self._abandoned:
                self._abandoned.discard(msgid)
                self._outstanding.discard(msgid)
            elif msgid in self._outstanding:
                self._outstanding.discard(msgid)
                self._done[msgid] = (msg[2], msg[3])
            return
        if msg[0] == NOTIFY and len(msg) == 3 and msg[1] == "error":
            # The server is about to close the connection (section 7).
            info = msg[2][0] if msg[2] and isinstance(msg[2][0], dict) else {}
            self._break(InvalConnectionError(
                str(info.get("code", "EPROTO")),
                str(info.get("message", "the server reported an error"))))
        # Other notifications carry nothing a client must act on.


def _reply_error(err):
    if isinstance(err, dict):
        return InvalError(str(err.get("code", "EPROTO")),
                          str(err.get("message", "")))
    return InvalError("EPROTO", f"malformed error in reply: {err!r:.80}")
