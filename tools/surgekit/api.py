"""HTTP to surge-api (and to any admin port): JSON in, JSON out, one
keep-alive connection per client object."""
import http.client
import json
import socket
from urllib.parse import urlsplit


class ApiError(Exception):
    """An answer that is not the one hoped for: carries status, body and headers."""

    def __init__(self, message, status=None, body=None, headers=None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.headers = headers or {}


class NoAnswer(ConnectionError):
    """The request went out but no answer came back (the connection closed or
    the time ran out): whether the server acted on it is unknown."""


class Unavailable(ApiError, ConnectionError):
    """503 from the api: a dependency (Redis) is away for a moment. A
    ConnectionError too, so that whoever retries a lost connection retries
    this the same way."""


class BadURL(ValueError):
    pass


def parse_http_url(url, default_port):
    """http://host[:port] (a bare host:port is accepted) -> (host, port)."""
    if "://" not in url:
        url = "http://" + url
    u = urlsplit(url)
    if u.scheme != "http":
        raise BadURL(f"{url!r}: only http:// is supported")
    if not u.hostname:
        raise BadURL(f"{url!r}: no host")
    try:
        port = u.port or default_port
    except ValueError:
        raise BadURL(f"{url!r}: the port is not a number between 1 and 65535") from None
    if u.path not in ("", "/"):
        raise BadURL(f"{url!r}: give only the address, without a path")
    return u.hostname, port


class Http:
    def __init__(self, url, default_port=8080, timeout=10.0):
        self.host, self.port = parse_http_url(url, default_port)
        self.timeout = timeout
        self.conn = None

    @property
    def address(self):
        return f"http://{self.host}:{self.port}"

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """-> (status, headers dict lower-case, body bytes). Retries once on a
        keep-alive connection the server closed meanwhile."""
        data = None
        headers = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                return r.status, hdrs, payload
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                self.close()
                if attempt == 2:
                    raise NoAnswer(f"{self.address} closed the connection: {e}") from None
            except (socket.timeout, TimeoutError):
                self.close()
                raise NoAnswer(f"{self.address} did not answer within {self.timeout} s") from None
            except OSError as e:
                self.close()
                raise ConnectionError(f"cannot reach {self.address}: {e.strerror or e}") from None
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, expect=(200,), headers=None):
        status, hdrs, payload = self.request(method, path, body, headers)
        try:
            doc = json.loads(payload) if payload else None
        except ValueError:
            doc = None
        if status not in expect:
            msg = f"{method} {path}: HTTP {status}"
            if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
                msg += f" {doc['error'].get('code')}: {doc['error'].get('message')}"
            elif payload:
                msg += f": {payload[:200].decode(errors='replace')}"
            raise (Unavailable if status == 503 else ApiError)(msg, status, doc, hdrs)
        return doc


class SurgeApi(Http):
    """The public API of surge-api."""

    def submit(self, job_type, params, idempotency_key=None):
        """POST /jobs; with idempotency_key, sending it again after a 503 or a
        lost answer gets the job the first request created, never a second."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.json("POST", "/jobs", {"type": job_type, "params": params}, expect=(202,),
                         headers=headers)

    def job(self, job_id):
        """The job's JSON, or None when the api answers 404; Unavailable
        on a 503 (Redis unreachable: ask again later)."""
        status, _, payload = self.request("GET", f"/jobs/{job_id}")
        if status == 404:
            return None
        if status == 503:
            raise Unavailable(f"GET /jobs/{job_id}: HTTP 503 (the api cannot reach Redis right now)", status)
        if status != 200:
            raise ApiError(f"GET /jobs/{job_id}: HTTP {status}: {payload[:200]!r}", status)
        return json.loads(payload)

    def metrics_text(self):
        status, _, payload = self.request("GET", "/metrics")
        if status != 200:
            raise ApiError(f"GET /metrics: HTTP {status}", status)
        return payload.decode(errors="replace")
