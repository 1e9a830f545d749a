"""Redis connections for the read path (inval.cache), with ACL users and
TLS, configured the way the C side is (README "Redis TLS and ACL users").

get_or_fill() and the other helpers take any redis.Redis or
redis.cluster.RedisCluster; connect_redis() makes one:

    r = connect_redis("10.0.0.5", 6380, username="app-orders",
                      password_file="/etc/app/redis.pw",
                      ssl_ca_certs="/etc/app/redis-ca.crt",
                      ssl_certfile="/etc/app/client.crt",
                      ssl_keyfile="/etc/app/client.key")
    get_or_fill(r, "orders:{42}", 300, load_order_42)

What it settles that redis-py (Debian's python3-redis 4.3) leaves open:

- The password comes from password=, from password_file= (read once,
  trailing newline dropped), or from $INVAL_REDIS_PASSWORD, so that it
  need not sit in code or on a command line. username= without any of
  them is refused: AUTH as a user needs its password.
- TLS verifies the server's name by default, as the daemons do: the
  address connected to (which must then be in the certificate's IP or DNS
  names) or ssl_server_name=, which is also sent as SNI. redis-py alone
  checks no name unless ssl_check_hostname=True, and cannot send a name
  other than the address.
- ssl_ca_certs= / ssl_ca_path= are then the only trusted CAs; without
  them the system store is.
- No verification at all is ssl_insecure=True, and nothing else: for
  tests only.
- The same settings reach every node of a cluster (cluster=True). redis-py
  4.3's RedisCluster drops ssl_ca_path and ssl_check_hostname on the way
  to its nodes; here they travel in the connection class instead.

Bad settings (a missing file, a password both given and in a file)
raise ValueError at once. A TLS failure surfaces on the first command as
redis.ConnectionError in OpenSSL's words ("certificate verify failed:
unable to get local issuer certificate"); a refused AUTH as
redis.AuthenticationError.
"""

import os
import ssl as _ssl
import warnings

import redis
import redis.cluster
import redis.connection

PASSWORD_ENV = "INVAL_REDIS_PASSWORD"


def read_password(password=None, password_file=None, env=None):
    """The Redis password: password, else the first line of password_file,
    else $INVAL_REDIS_PASSWORD from env (default os.environ), else None.

    Raises ValueError when both password and password_file are given, or
    when the file is empty or unreadable. Warns (UserWarning) when the
    file is readable by its group or by others, as the daemons do."""
    if password is not None and password_file is not None:
        raise ValueError("give password or password_file, not both")
    if password is not None:
        return password
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                st = os.fstat(f.fileno())
                text = f.read(4097)
        except OSError as e:
            raise ValueError(f"password_file {password_file}: "
                             f"{e.strerror}") from None
        if len(text) > 4096:
            raise ValueError(f"password_file {password_file}: longer than "
                             "4096 bytes")
        pw = text.split("\n", 1)[0].rstrip("\r")
        if pw == "":
            raise ValueError(f"password_file {password_file} is empty")
        if st.st_mode & 0o077:
            warnings.warn(f"password_file {password_file} is readable by "
                          f"others (mode {st.st_mode & 0o777:o}); use 0600",
                          stacklevel=3)
        return pw
    env = os.environ if env is None else env
    return env.get(PASSWORD_ENV) or None


class TLSConnection(redis.connection.Connection):
    """A redis-py connection that speaks TLS as the settings in the class
    attribute tls say (see tls_connection_class()). The settings live in
    the class, not in keyword arguments, because RedisCluster passes only
    the keyword arguments it knows to its nodes."""

    tls = None  # a dict made by tls_connection_class()

    def _connect(self):
        sock = super()._connect()
        t = self.tls
        name = t["server_name"] or self.host
        try:
            return self._context().wrap_socket(
                sock, server_hostname=name)
        except BaseException:
            sock.close()
            raise

    def _context(self):
        t = self.tls
        ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        if t["insecure"]:
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE
        else:
            ctx.check_hostname = t["check_hostname"]
            ctx.verify_mode = _ssl.CERT_REQUIRED
            if t["ca_certs"] or t["ca_path"]:
                ctx.load_verify_locations(cafile=t["ca_certs"],
                                          capath=t["ca_path"])
            else:
                ctx.load_default_certs()
        if t["certfile"]:
            ctx.load_cert_chain(t["certfile"], t["keyfile"])
        return ctx

    def _error_message(self, exception):
        # The address, then OpenSSL's reason without redis-py's "Error 1
        # connecting to" prefix and errno, which say nothing for TLS.
        if isinstance(exception, _ssl.SSLError):
            why = getattr(exception, "verify_message", None)
            reason = exception.reason or str(exception)
            if why and "CERTIFICATE_VERIFY_FAILED" in reason:
                reason = f"certificate verify failed: {why}"
            return f"TLS to {self.host}:{self.port}: {reason}"
        return super()._error_message(exception)


def _check_file(what, path, isdir=False):
    if path is None:
        return
    ok = os.path.isdir(path) if isdir else os.path.isfile(path)
    if not ok:
        raise ValueError(f"{what} {path}: no such "
                         f"{'directory' if isdir else 'file'}")


def tls_connection_class(ssl_ca_certs=None, ssl_ca_path=None,
                         ssl_certfile=None, ssl_keyfile=None,
                         ssl_server_name=None, ssl_check_hostname=True,
                         ssl_insecure=False):
    """A TLSConnection subclass that carries these settings (see
    connect_redis()). Raises ValueError for a file that does not exist or
    a key without its certificate."""
    _check_file("ssl_ca_certs", ssl_ca_certs)
    _check_file("ssl_ca_path", ssl_ca_path, isdir=True)
    _check_file("ssl_certfile", ssl_certfile)
    _check_file("ssl_keyfile", ssl_keyfile)
    if ssl_keyfile is not None and ssl_certfile is None:
        raise ValueError("ssl_keyfile needs ssl_certfile")
    tls = {"ca_certs": ssl_ca_certs, "ca_path": ssl_ca_path,
           "certfile": ssl_certfile, "keyfile": ssl_keyfile,
           "server_name": ssl_server_name,
           "check_hostname": bool(ssl_check_hostname),
           "insecure": bool(ssl_insecure)}
    return type("InvalTLSConnection", (TLSConnection,), {"tls": tls})


def connect_redis(host="127.0.0.1", port=6379, *, cluster=False,
                  username=None, password=None, password_file=None,
                  ssl=False, ssl_ca_certs=None, ssl_ca_path=None,
                  ssl_certfile=None, ssl_keyfile=None, ssl_server_name=None,
                  ssl_check_hostname=True, ssl_insecure=False,
                  socket_timeout=5.0, **kwargs):
    """A redis.Redis (or, with cluster=True, a redis.cluster.RedisCluster
    seeded at host:port) for get_or_fill() and the other helpers.

    username, password, password_file: AUTH [username] password; the
    password as read_password() finds it ($INVAL_REDIS_PASSWORD when
    neither is given).
    ssl: TLS to Redis; any ssl_* setting below turns it on too.
    ssl_ca_certs (file), ssl_ca_path (directory): the CAs that verify the
    server (default: the system store).
    ssl_certfile, ssl_keyfile: a client certificate (tls-auth-clients).
    ssl_server_name: the name sent as SNI and verified (default: host).
    ssl_check_hostname: verify that name (default True).
    ssl_insecure: no verification at all; tests only.
    Other keyword arguments go to redis-py (decode_responses, ...).

    A standalone client connects lazily, as redis-py does: a TLS or AUTH
    failure is raised by the first command. RedisCluster connects at once
    to discover the cluster, so with cluster=True those failures are
    raised here (redis.ConnectionError, redis.AuthenticationError, ...,
    with the reason, not only RedisClusterException). Raises ValueError
    for bad settings (see read_password() and tls_connection_class())."""
    pw = read_password(password, password_file)
    if username is not None and pw is None:
        raise ValueError(f"username {username!r} needs a password "
                         f"(password, password_file or ${PASSWORD_ENV})")
    if ssl_keyfile is not None or ssl_certfile is not None or \
            ssl_ca_certs is not None or ssl_ca_path is not None or \
            ssl_server_name is not None or ssl_insecure:
        ssl = True
    opts = dict(kwargs, username=username, password=pw,
                socket_timeout=socket_timeout)
    opts.setdefault("socket_connect_timeout", socket_timeout)
    if ssl:
        opts["connection_class"] = tls_connection_class(
            ssl_ca_certs, ssl_ca_path, ssl_certfile, ssl_keyfile,
            ssl_server_name, ssl_check_hostname, ssl_insecure)
    if not cluster:
        return _standalone(host, port, opts)
    # Through url= RedisCluster builds each node's pool from the keyword
    # arguments, connection_class included (host= would go through
    # redis.Redis(), which takes no connection_class).
    where = f"[{host}]" if ":" in host else host
    try:
        return redis.cluster.RedisCluster(url=f"redis://{where}:{port}",
                                          **opts)
    except redis.cluster.RedisClusterException as e:
        # Discovery connects at once and only logs why it failed; one
        # PING to the seed raises the reason (TLS, AUTH, NOPERM) instead.
        _standalone(host, port, opts).ping()
        raise e


def _standalone(host, port, opts):
    opts = dict(opts)
    opts.setdefault("connection_class", redis.connection.Connection)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        host=host, port=port, **opts))


__all__ = ["PASSWORD_ENV", "TLSConnection", "connect_redis",
           "read_password", "tls_connection_class"]
