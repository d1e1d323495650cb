"""The EBS HTTP server (signed, AWS-shaped) and the admin server (plain JSON).

Threads: one daemon thread per connection, taken from a pool of threads
waiting in accept() (_PooledServer; the admin server is a plain
ThreadingHTTPServer), HTTP/1.1 keep-alive, TCP_NODELAY.  Injected latency is
a sleep in the connection's own thread, so 100 connections x 100 ms cost no
CPU.  Per-request work is kept small: signing keys and synthetic-block digests
are cached, stored blocks are one pread, and each response leaves in one
sendall.

Order of processing for every EBS request: read the body; route (unknown
routes -> 404 UnknownOperationException); count it; verify the signature;
apply a matching fault rule; apply the per-snapshot rate limit
(Get/PutSnapshotBlock); run the operation; wait until the latency has passed
since the request came in; send (body faults act here).
"""

import base64
import email.utils
import http.server
import json
import os
import random
import re
import select
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

from . import BLOCK_SIZE
from .api import Api, ApiError
from .sigv4 import AuthError, Verifier

MAX_BODY = 2 * 1024 * 1024

_ROUTES = [
    ("POST", re.compile(r"^/snapshots$"), "StartSnapshot"),
    ("PUT", re.compile(r"^/snapshots/([^/]+)/blocks/([^/]+)$"), "PutSnapshotBlock"),
    ("POST", re.compile(r"^/snapshots/completion/([^/]+)$"), "CompleteSnapshot"),
    ("GET", re.compile(r"^/snapshots/([^/]+)/blocks$"), "ListSnapshotBlocks"),
    ("GET", re.compile(r"^/snapshots/([^/]+)/changedblocks$"), "ListChangedBlocks"),
    ("GET", re.compile(r"^/snapshots/([^/]+)/blocks/([^/]+)$"), "GetSnapshotBlock"),
]
OPS = [r[2] for r in _ROUTES]

# Fault kinds answered with an error instead of running the operation.
_ERROR_FAULTS = {
    "500": (500, "InternalServerException", "An internal error occurred (injected).", None),
    "503": (503, "ServiceUnavailableException", "Service Unavailable (injected).", None),
    "throttle": (400, "RequestThrottledException", "Rate exceeded (injected).", "ACCOUNT_THROTTLED"),
    "throttling": (400, "ThrottlingException", "Rate exceeded (injected).", None),
    "concurrent": (400, "ConcurrentLimitExceededException", "Concurrent limit exceeded (injected).", None),
    "403": (403, "AccessDeniedException", "Access denied (injected).", "UNAUTHORIZED_ACCOUNT"),
}
# Fault kinds that act on the response of the operation, which did run.
_BODY_FAULTS = ("reset", "stall", "short", "corrupt")
FAULT_KINDS = tuple(_ERROR_FAULTS) + _BODY_FAULTS + ("delay", "error")


class Config:
    """Runtime knobs; GET/POST /config on the admin port."""
    FIELDS = {
        "latency_ms": float,        # added to every EBS request
        "rate_limit": float,        # Get/PutSnapshotBlock requests/s per snapshot, 0 = off
        "token_ttl_s": float,       # block token lifetime (AWS: 7 days)
        "page_token_ttl_s": float,  # NextToken lifetime (AWS: 60 minutes)
        "timeout_unit_s": float,    # seconds per StartSnapshot Timeout minute (60)
        "max_pending": int,         # concurrent pending snapshots (AWS: 100), 0 = off
        "stall_s": float,           # how long a "stall" fault holds the connection
    }

    def __init__(self, **kw):
        self.latency_ms = 0.0
        self.rate_limit = 1000.0
        self.token_ttl_s = 7 * 86400.0
        self.page_token_ttl_s = 3600.0
        self.timeout_unit_s = 60.0
        self.max_pending = 100
        self.stall_s = 60.0
        self.update(kw)

    def update(self, d):
        for k, v in d.items():
            if k not in self.FIELDS:
                raise ValueError("unknown config key %r (known: %s)" % (k, ", ".join(self.FIELDS)))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError("%s must be a non-negative number" % k)
            setattr(self, k, self.FIELDS[k](v))

    def as_dict(self):
        return {k: getattr(self, k) for k in self.FIELDS}


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            old = self.snapshot_unlocked() if hasattr(self, "ops") else None
            self.ops = {op: 0 for op in OPS}
            self.by_status = {}
            self.by_snapshot = {}
            self.faults = {}
            self.throttled = 0
            self.auth_failures = 0
            self.unknown = 0
            self.bytes_out = 0
            self.bytes_in = 0
        return old

    def request(self, op, sid):
        with self.lock:
            self.ops[op] += 1
            if sid:
                d = self.by_snapshot.setdefault(sid, {})
                d[op] = d.get(op, 0) + 1

    def status(self, op, status, nin, nout):
        with self.lock:
            d = self.by_status.setdefault(op or "unknown", {})
            k = str(status)
            d[k] = d.get(k, 0) + 1
            self.bytes_in += nin
            self.bytes_out += nout

    def bump(self, name, key=None):
        with self.lock:
            if key is None:
                setattr(self, name, getattr(self, name) + 1)
            else:
                d = getattr(self, name)
                d[key] = d.get(key, 0) + 1

    def snapshot_unlocked(self):
        out = dict(self.ops)
        out["Total"] = sum(self.ops.values())
        out.update({"by_status": json.loads(json.dumps(self.by_status)),
                    "by_snapshot": json.loads(json.dumps(self.by_snapshot)),
                    "faults": dict(self.faults), "throttled": self.throttled,
                    "auth_failures": self.auth_failures, "unknown_requests": self.unknown,
                    "bytes_in": self.bytes_in, "bytes_out": self.bytes_out})
        return out

    def as_dict(self):
        with self.lock:
            return self.snapshot_unlocked()


class Faults:
    """Fault-injection rules; the first matching rule that fires wins."""
    KEYS = {"op", "kind", "probability", "count", "skip", "block_index", "snapshot_id",
            "delay_ms", "status", "code", "reason", "message"}

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    @classmethod
    def check(cls, rule):
        if not isinstance(rule, dict):
            raise ValueError("a fault rule is a JSON object")
        bad = set(rule) - cls.KEYS
        if bad:
            raise ValueError("unknown fault rule keys: %s" % ", ".join(sorted(bad)))
        if rule.get("kind") not in FAULT_KINDS:
            raise ValueError("fault kind must be one of %s" % ", ".join(FAULT_KINDS))
        op = rule.get("op")
        if op is not None and op != "*" and op not in OPS:
            raise ValueError("unknown op %r" % op)
        p = rule.get("probability", 1.0)
        if not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError("probability must be in 0..1")
        for k in ("count", "skip", "block_index", "delay_ms", "status"):
            if k in rule and (not isinstance(rule[k], int) or rule[k] < 0):
                raise ValueError("%s must be a non-negative integer" % k)
        if rule["kind"] == "error" and not (rule.get("status") and rule.get("code")):
            raise ValueError("kind 'error' needs status and code")
        r = dict(rule)
        r.setdefault("fired", 0)
        return r

    def set(self, rules):
        checked = [self.check(r) for r in rules]
        with self.lock:
            self.rules = checked

    def clear(self):
        with self.lock:
            self.rules = []

    def as_list(self):
        with self.lock:
            return [dict(r) for r in self.rules]

    def pick(self, op, sid, index):
        if not self.rules:
            return None
        with self.lock:
            for r in self.rules:
                if r.get("op") not in (None, "*", op):
                    continue
                if "snapshot_id" in r and r["snapshot_id"] != sid:
                    continue
                if "block_index" in r and r["block_index"] != index:
                    continue
                if "count" in r and r["count"] <= 0:
                    continue
                if r.get("skip", 0) > 0:
                    r["skip"] -= 1
                    continue
                if random.random() >= r.get("probability", 1.0):
                    continue
                if "count" in r:
                    r["count"] -= 1
                r["fired"] += 1
                return dict(r)
        return None


class RateLimiter:
    """Token bucket per snapshot: rate tokens/s, burst of one second's worth."""

    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.buckets = {}

    def allow(self, sid):
        rate = self.config.rate_limit
        if rate <= 0:
            return True
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(sid, (rate, now))
            tokens = min(rate, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self.buckets[sid] = (tokens - 1.0, now)
                return True
            self.buckets[sid] = (tokens, now)
            return False


class _Date:
    """The HTTP Date header, formatted once per second."""

    def __init__(self):
        self.sec = 0
        self.value = ""

    def get(self):
        now = int(time.time())
        if now != self.sec:
            self.value = email.utils.formatdate(now, usegmt=True)
            self.sec = now
        return self.value


class EbsHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ebs-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None
    body_buffer = None
    answer_at = 0.0              # monotonic time the answer may leave (_handle sets it)
    arrived = 0.0                # monotonic time the request line was read

    def log_message(self, fmt, *args):
        if not self.server.ctx.quiet:
            sys.stderr.write("ebs-emulator: %s - %s\n" % (self.address_string(), fmt % args))

    def finish(self):
        # The connection is over: its block buffers go back for the next one.
        try:
            super().finish()
        finally:
            store = self.server.ctx.store
            store.release_thread_buffer()
            store.give_buffer(self.body_buffer)
            self.body_buffer = None

    def parse_request(self):
        # The request line is in: the request has arrived.  Parsing the
        # headers (slow in Python, and slower while other threads hold the
        # GIL) is part of the server's latency, not added to it.
        self.arrived = time.monotonic()
        return super().parse_request()

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    # -- plumbing ----------------------------------------------------------------------
    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length", "0") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("body too large")
        if n < 65536:
            body = self.rfile.read(n) if n else b""
            if len(body) != n:
                raise ConnectionError("client closed mid-body")
            return body
        # Blocks go into this connection's borrowed buffer: no 512 KiB allocation per request.
        buf = self.body_buffer
        if buf is None or len(buf) < n:
            self.server.ctx.store.give_buffer(buf)
            buf = self.body_buffer = (self.server.ctx.store.take_buffer() if n <= BLOCK_SIZE
                                      else bytearray(n))
        view = memoryview(buf)[:n]
        got = 0
        while got < n:
            k = self.rfile.readinto(view[got:])
            if not k:
                raise ConnectionError("client closed mid-body")
            got += k
        return view

    def _send(self, status, headers, body, fault=None):
        ctx = self.server.ctx
        reason = self.responses.get(status, ("",))[0]
        lines = ["HTTP/1.1 %d %s" % (status, reason),
                 "Date: " + ctx.date.get(),
                 "x-amzn-RequestId: " + self.request_id,
                 "Content-Length: %d" % len(body)]
        lines += ["%s: %s" % h for h in headers]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        kind = fault["kind"] if fault else None
        wait = self.answer_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        # Counted before sending: a client may read the counters as soon as it
        # has the answer.
        self.status_sent = status
        ctx.counters.status(self.op, status, self.nin, len(head) + len(body))
        if kind == "corrupt" and body:
            b = bytearray(body)
            for pos in (0, len(b) // 3, len(b) // 2, len(b) - 1):
                b[pos] ^= 0xA5
            body = bytes(b)
        if self.command == "HEAD":
            body = b""
        if kind in ("reset", "stall", "short"):
            ctx.counters.bump("faults", kind)
            part = body[:len(body) // 2]
            try:
                self.connection.sendall(head + part)
                if kind == "stall":
                    self._stall(ctx.config.stall_s)
                elif kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True
            try:
                self.connection.close()
            except OSError:
                pass
            return len(head) + len(part)
        if kind == "corrupt":
            ctx.counters.bump("faults", kind)
        self._sendv(head, body)
        return len(head) + len(body)

    def _sendv(self, head, body):
        """Headers and body in one sendmsg, without joining them (no copy)."""
        sock = self.connection
        bufs = [memoryview(head), memoryview(body)]
        while bufs:
            n = sock.sendmsg(bufs)
            while bufs and n >= len(bufs[0]):
                n -= len(bufs[0])
                bufs.pop(0)
            if bufs and n:
                bufs[0] = bufs[0][n:]

    def _stall(self, seconds):
        """Hold the connection without sending until the client gives up."""
        end = time.monotonic() + seconds
        sock = self.connection
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([sock], [], [], min(left, 1.0))
            if r:
                try:
                    if not sock.recv(65536):
                        return              # client closed
                except OSError:
                    return

    def _error(self, status, code, message, reason=None, lower=False, fault=None):
        body = {"message" if lower else "Message": message}
        if reason:
            body["Reason"] = reason
        etype = code
        if code == "ValidationException":
            # What AWS's front end sends; clients must cut at ':'.
            etype += ":http://internal.amazon.com/coral/com.amazon.coral.validate/"
        return self._send(status, [("x-amzn-ErrorType", etype),
                                   ("Content-Type", "application/json")],
                          json.dumps(body).encode(), fault)

    # -- the request -------------------------------------------------------------------
    def _handle(self):
        ctx = self.server.ctx
        t0 = self.arrived or time.monotonic()
        # The answer leaves latency_ms after the request came in, however long
        # the work took inside that time (as a remote server's work is part of
        # its latency): _send waits for this moment.
        self.answer_at = t0 + ctx.config.latency_ms / 1000.0
        self.request_id = str(uuid.UUID(bytes=os.urandom(16), version=4))
        self.status_sent = 0
        self.op = None
        self.nin = 0
        op = None
        try:
            try:
                body = self._read_body()
            except (ValueError, ConnectionError) as e:
                self.close_connection = True
                self._error(400, "SerializationException", "Cannot read the request body: %s" % e)
                return
            self.nin = len(body)
            raw_path, _, raw_query = self.path.partition("?")
            op, params = None, ()
            for method, rx, name in _ROUTES:
                m = rx.match(raw_path)
                if m and method == self.command:
                    op, params = name, m.groups()
                    self.op = op
                    break
            sid = urllib.parse.unquote(params[0]) if params and op != "StartSnapshot" else None
            if op is None:
                ctx.counters.bump("unknown")
            else:
                ctx.counters.request(op, sid)
            try:
                ctx.verifier.verify(self.command, raw_path, raw_query,
                                    lambda n: self.headers.get_all(n) or [], body)
            except AuthError as e:
                ctx.counters.bump("auth_failures")
                self._error(e.status, e.code, e.message, lower=True)
                return
            if op is None:
                self._error(404, "UnknownOperationException",
                                   "No operation matches %s %s" % (self.command, raw_path))
                return
            query = {}
            for item in raw_query.split("&"):
                if item:
                    k, _, v = item.partition("=")
                    query[urllib.parse.unquote_plus(k)] = urllib.parse.unquote_plus(v)
            index = None
            if op in ("PutSnapshotBlock", "GetSnapshotBlock"):
                try:
                    index = int(params[1])
                except ValueError:
                    index = None
            fault = ctx.faults.pick(op, sid, index)
            if fault is not None:
                kind = fault["kind"]
                if kind == "delay":
                    ctx.counters.bump("faults", kind)
                    self.answer_at += fault.get("delay_ms", 1000) / 1000.0
                    fault = None
                elif kind == "error" or kind in _ERROR_FAULTS:
                    ctx.counters.bump("faults", kind)
                    if kind == "error":
                        spec = (fault["status"], fault["code"], fault.get("message", "injected"),
                                fault.get("reason"))
                    else:
                        spec = _ERROR_FAULTS[kind]
                    self._error(*spec)
                    return
            if op in ("PutSnapshotBlock", "GetSnapshotBlock") and not ctx.limiter.allow(sid):
                ctx.counters.bump("throttled")
                self._error(400, "RequestThrottledException",
                                   "The request rate for snapshot '%s' exceeds the limit of %g "
                                   "requests per second." % (sid, ctx.config.rate_limit),
                                   "RESOURCE_LEVEL_THROTTLE", fault=fault)
                return
            try:
                status, headers, out = self._run(ctx.api, op, params, query, body)
            except ApiError as e:
                self._error(e.status, e.code, e.message, e.reason, fault=fault)
                return
            self._send(status, headers, out, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:           # never take the server down; answer like AWS would
            self.close_connection = True
            sys.stderr.write("ebs-emulator: internal error on %s %s: %r\n" % (self.command, self.path, e))
            traceback.print_exc()
            try:
                self._error(500, "InternalServerException", "Internal error: %s" % e)
            except OSError:
                pass
        finally:
            if not self.status_sent:
                ctx.counters.status(op, 0, self.nin, 0)
            if not ctx.quiet:
                # Wall-clock time of the answer, to line up with a client's log.
                sys.stderr.write("ebs-emulator: %.3f %s %s %s -> %d (%.1f ms)\n" % (
                    time.time(), op or "-", self.command, self.path[:160], self.status_sent,
                    (time.monotonic() - t0) * 1000))

    def log_request(self, code="-", size="-"):
        pass

    def _run(self, api, op, params, query, body):
        def header(n):
            return self.headers.get(n)
        sid = urllib.parse.unquote(params[0]) if params else None
        if op == "StartSnapshot":
            return api.start_snapshot(body)
        if op == "PutSnapshotBlock":
            return api.put_block(sid, urllib.parse.unquote(params[1]), header, body)
        if op == "CompleteSnapshot":
            return api.complete(sid, header)
        if op == "ListSnapshotBlocks":
            return api.list_blocks(sid, query)
        if op == "ListChangedBlocks":
            return api.list_changed(sid, query)
        data, digest = api.get_block(sid, urllib.parse.unquote(params[1]), query)
        return 200, [("x-amz-Data-Length", str(BLOCK_SIZE)),
                     ("x-amz-Checksum", base64.b64encode(digest).decode()),
                     ("x-amz-Checksum-Algorithm", "SHA256"),
                     ("Content-Type", "application/octet-stream")], data


class AdminHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "ebs-emulator-admin"

    def log_message(self, fmt, *args):
        if not self.server.ctx.quiet:
            sys.stderr.write("ebs-emulator admin: %s\n" % (fmt % args))

    def _reply(self, status, obj):
        body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw.decode() or "null")

    def do_GET(self):
        ctx = self.server.ctx
        p = self.path.split("?")[0].rstrip("/")
        if p == "/counters":
            return self._reply(200, ctx.counters.as_dict())
        if p == "/config":
            return self._reply(200, ctx.config.as_dict())
        if p == "/faults":
            return self._reply(200, ctx.faults.as_list())
        if p == "/snapshots":
            return self._reply(200, [s.describe() for s in ctx.store.scan()])
        m = re.match(r"^/snapshots/(snap-[0-9a-f]+)$", p)
        if m:
            # One snapshot with the indices of the blocks written to it (what
            # a test compares with ListChangedBlocks-like expectations).
            s = ctx.store.get(m.group(1))
            if s is None:
                return self._reply(404, {"error": "no snapshot %s" % m.group(1)})
            return self._reply(200, s.describe() | {"OwnBlockIndices": s.own_indices()})
        if p in ("/health", ""):
            return self._reply(200, {"ok": True, "port": ctx.port})
        return self._reply(404, {"error": "no such admin path %s" % p})

    def do_POST(self):
        ctx = self.server.ctx
        p = self.path.split("?")[0].rstrip("/")
        try:
            if p == "/counters/reset":
                return self._reply(200, ctx.counters.reset())
            body = self._body()
            if p == "/config":
                if not isinstance(body, dict):
                    raise ValueError("config is a JSON object")
                ctx.config.update(body)
                return self._reply(200, ctx.config.as_dict())
            if p == "/faults":
                if isinstance(body, dict):
                    body = body.get("rules", [body]) if "rules" in body else [body]
                if not isinstance(body, list):
                    raise ValueError("faults is a JSON list of rules")
                ctx.faults.set(body)
                return self._reply(200, ctx.faults.as_list())
        except ValueError as e:
            return self._reply(400, {"error": str(e)})
        return self._reply(404, {"error": "no such admin path %s" % p})

    def do_DELETE(self):
        p = self.path.split("?")[0].rstrip("/")
        if p == "/faults":
            self.server.ctx.faults.clear()
            return self._reply(200, [])
        return self._reply(404, {"error": "no such admin path %s" % p})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True


class _PooledServer(_Server):
    """The EBS server: threads waiting in accept() take new connections.

    socketserver's loop accepts in one thread and starts a thread per
    connection; under the GIL that costs about a millisecond per connection,
    one after another, so a client opening 20 connections for a burst waited
    20-35 ms more than AWS would make it (whose front end accepts in
    parallel).  Here a pool of threads blocks in accept() (the kernel hands
    each connection to one of them), each serves its connection to the end,
    and a keeper thread tops the idle pool up off the connection's path.
    """
    MIN_IDLE = 32                       # a burst this wide finds a thread waiting
    MAX_IDLE = 128                      # more idle than this: a finished thread exits

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._pool_lock = threading.Condition()
        self._idle = 0                  # threads in (or about to be in) accept()
        self._stopping = threading.Event()

    def serve_forever(self, poll_interval=0.5):
        threading.Thread(target=self._keeper, name="ebs-accept-keeper", daemon=True).start()
        try:
            while not self._stopping.wait(poll_interval):
                pass
        finally:
            self._stopping.set()
            with self._pool_lock:
                self._pool_lock.notify_all()

    def shutdown(self):
        # socketserver's would wait for a loop this class does not run.
        self._stopping.set()

    def _keeper(self):
        while not self._stopping.is_set():
            with self._pool_lock:
                while self._idle >= self.MIN_IDLE and not self._stopping.is_set():
                    self._pool_lock.wait()
                if self._stopping.is_set():
                    return
                self._idle += 1
            threading.Thread(target=self._acceptor, name="ebs-conn", daemon=True).start()

    def _acceptor(self):
        while not self._stopping.is_set():
            try:
                conn, addr = self.socket.accept()
            except OSError:
                with self._pool_lock:
                    self._idle -= 1
                    self._pool_lock.notify()
                return
            with self._pool_lock:
                self._idle -= 1
                self._pool_lock.notify()      # the keeper starts a replacement
            try:
                self.finish_request(conn, addr)
            except Exception:
                self.handle_error(conn, addr)
            finally:
                self.shutdown_request(conn)
            with self._pool_lock:
                if self._idle >= self.MAX_IDLE:
                    return
                self._idle += 1


class Context:
    def __init__(self, store, tokens, config, credentials, region, quiet):
        self.store = store
        self.config = config
        self.api = Api(store, tokens, config)
        self.verifier = Verifier(credentials, region)
        self.counters = Counters()
        self.faults = Faults()
        self.limiter = RateLimiter(config)
        self.date = _Date()
        self.quiet = quiet
        self.port = 0


def make_servers(ctx, host, port, admin_port):
    ebs = _PooledServer((host, port), EbsHandler)
    ebs.ctx = ctx
    admin = _Server((host, admin_port), AdminHandler)
    admin.ctx = ctx
    ctx.port = ebs.server_address[1]
    return ebs, admin


def reaper(ctx, stop):
    """Cancels pending snapshots whose Timeout ran out, even when nobody asks."""
    while not stop.wait(1.0):
        for s in list(ctx.store.snapshots.values()):
            try:
                ctx.api.check_timeout(s)
            except OSError as e:
                sys.stderr.write("ebs-emulator: reaper: %s\n" % e)
