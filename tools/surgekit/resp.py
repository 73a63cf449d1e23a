"""A tiny Redis client: RESP2 over one TCP connection, enough for surge's
keys (lists, hashes, sorted sets, strings, SCAN, EVAL).

    r = Redis.from_url("redis://127.0.0.1:6379/0")
    r.call("LLEN", "surge:queue")          -> 3
    r.pipeline([("LLEN", "a"), ("ZCARD", "b")]) -> [0, 0]

Bulk strings come back as str (UTF-8, undecodable bytes replaced); errors
from Redis raise RedisError; a lost connection raises ConnectionError."""
import socket
from urllib.parse import unquote, urlsplit


class RedisError(Exception):
    """An error reply from Redis (-ERR ...)."""


class BadURL(ValueError):
    pass


def parse_url(url):
    """redis://[user[:password]@]host[:port][/db] -> dict. Only plain TCP."""
    u = urlsplit(url)
    if u.scheme != "redis":
        raise BadURL(f"{url!r}: the Redis address must look like redis://127.0.0.1:6379/0")
    if not u.hostname:
        raise BadURL(f"{url!r}: no host")
    try:
        port = u.port or 6379
    except ValueError:
        raise BadURL(f"{url!r}: the port is not a number between 1 and 65535") from None
    path = u.path.strip("/")
    if path and not path.isdigit():
        raise BadURL(f"{url!r}: the database after the / must be a number")
    return {
        "host": u.hostname,
        "port": port,
        "db": int(path) if path else 0,
        "username": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else None,
    }


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, (int, float)):
            b = repr(a).encode() if isinstance(a, float) else str(a).encode()
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Redis:
    def __init__(self, host="127.0.0.1", port=6379, db=0, username=None, password=None,
                 timeout=5.0):
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout = timeout
        self.sock = None
        self.f = None

    @classmethod
    def from_url(cls, url, timeout=5.0):
        return cls(timeout=timeout, **parse_url(url))

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- connection

    def connect(self):
        if self.sock:
            return self
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise ConnectionError(f"cannot reach Redis at {self.address}: {e.strerror or e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        try:
            if self.password is not None:
                if self.username:
                    self._call_now("AUTH", self.username, self.password)
                else:
                    self._call_now("AUTH", self.password)
            if self.db:
                self._call_now("SELECT", self.db)
        except Exception:
            self.close()
            raise
        return self

    def close(self):
        for x in (self.f, self.sock):
            try:
                if x:
                    x.close()
            except OSError:
                pass
        self.sock = self.f = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    # -- commands

    def call(self, *args):
        """Sends one command and returns its reply."""
        self.connect()
        return self._call_now(*args)

    def _call_now(self, *args):
        self._send(_encode(args))
        return self._reply_or_raise()

    def pipeline(self, commands):
        """Sends several commands in one write; returns their replies in
        order. An error reply is returned as a RedisError object, not raised."""
        self.connect()
        self._send(b"".join(_encode(c) for c in commands))
        return [self._read() for _ in commands]

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.close()
            raise ConnectionError(f"lost the connection to Redis at {self.address}: {e}") from None

    def _reply_or_raise(self):
        r = self._read()
        if isinstance(r, RedisError):
            raise r
        return r

    def _line(self):
        try:
            line = self.f.readline(1 << 20)
        except (OSError, socket.timeout) as e:
            self.close()
            raise ConnectionError(f"no answer from Redis at {self.address}: {e}") from None
        if not line.endswith(b"\r\n"):
            self.close()
            raise ConnectionError(f"Redis at {self.address} closed the connection")
        return line[:-2]

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode(errors="replace")
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            try:
                data = self.f.read(n + 2)
            except (OSError, socket.timeout) as e:
                self.close()
                raise ConnectionError(f"no answer from Redis at {self.address}: {e}") from None
            if len(data) != n + 2:
                self.close()
                raise ConnectionError(f"Redis at {self.address} closed the connection")
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        self.close()
        raise ConnectionError(f"unexpected answer from {self.address}: {line[:80]!r} (is it Redis?)")

    # -- helpers

    def scan_keys(self, pattern, count=500):
        """Every key matching pattern (SCAN, never KEYS)."""
        cursor, out = "0", []
        while True:
            cursor, keys = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", count)
            out.extend(keys)
            if cursor == "0":
                return sorted(set(out))

    def hgetall(self, key):
        items = self.call("HGETALL", key) or []
        return dict(zip(items[0::2], items[1::2]))
