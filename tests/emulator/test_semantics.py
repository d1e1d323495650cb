#!/usr/bin/env python3
"""Semantics of the EBS emulator, driven through botocore (the real AWS SDK).

Run by tests/emulator-semantics.sh after start_emulator; reads EMU_URL,
EMU_ADMIN_URL, EMU_DATA_DIR and the AWS_* environment.  Phases:
  test_semantics.py            the unittest suite
  test_semantics.py prepare F  write snapshots and record them in F
  test_semantics.py verify F   after a server restart: all of it is still there
Exit 77 when botocore is missing.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

try:
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.exceptions import ClientError
except ImportError:
    print("SKIP: botocore is not importable by %s" % sys.executable)
    sys.exit(77)

BS = 524288
HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "ebs-emulator")
URL = os.environ["EMU_URL"]
ADMIN = os.environ["EMU_ADMIN_URL"]
DATA = os.environ["EMU_DATA_DIR"]
TMP = os.environ.get("EMU_TMP", "/tmp")
AKID = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]


def client(**kw):
    sess = botocore.session.get_session()
    return sess.create_client(
        "ebs", region_name="us-east-1", endpoint_url=URL,
        aws_access_key_id=kw.get("akid", AKID), aws_secret_access_key=kw.get("secret", SECRET),
        aws_session_token=kw.get("token"),
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=64,
                      read_timeout=kw.get("read_timeout", 30)))


def admin(method, path, obj=None):
    data = None if obj is None else json.dumps(obj).encode()
    req = urllib.request.Request(ADMIN + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def emu(*args):
    dd = [] if args[0] == "synth-block" else ["--data-dir", DATA]
    out = subprocess.run([sys.executable, EMULATOR, args[0]] + dd + list(args[1:]),
                         check=True, stdout=subprocess.PIPE, timeout=60)
    return out.stdout


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def block(tag):
    """A 512 KiB block, distinct per tag, cheap to make."""
    seed = hashlib.sha256(str(tag).encode()).digest()
    return (seed * (BS // 32))[:BS - 32] + seed


def err(e):
    return e.response["Error"]["Code"], e.response.get("Reason"), \
        e.response["ResponseMetadata"]["HTTPStatusCode"]


def raw(method, path, query="", headers=None, body=b"", timeout=10, read=True, unsigned=False):
    """A SigV4-signed request sent with http.client: full control of the wire."""
    url = URL + path + ("?" + query if query else "")
    hdrs = dict(headers or {})
    if unsigned:
        hdrs["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    SigV4Auth(Credentials(AKID, SECRET), "ebs", "us-east-1").add_auth(req)
    u = urllib.parse.urlsplit(URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request(method, path + ("?" + query if query else ""), body=body or None,
                 headers=dict(req.headers.items()))
    try:
        resp = conn.getresponse()
        data = resp.read() if read else None
    except BaseException:
        conn.close()
        raise
    if read:
        conn.close()
    return conn, resp, data


class Base(unittest.TestCase):
    c = None

    @classmethod
    def setUpClass(cls):
        cls.c = client()

    def setUp(self):
        admin("DELETE", "/faults")

    def tearDown(self):
        admin("DELETE", "/faults")
        admin("POST", "/config", {"latency_ms": 0, "rate_limit": 1000, "token_ttl_s": 604800,
                                  "timeout_unit_s": 60, "stall_s": 60, "page_token_ttl_s": 3600})

    def write(self, blocks, size=1, parent=None, complete=True, **kw):
        args = {"VolumeSize": size}
        if parent:
            args["ParentSnapshotId"] = parent
        args.update(kw)
        sid = self.c.start_snapshot(**args)["SnapshotId"]
        for i, data in blocks.items():
            self.c.put_snapshot_block(SnapshotId=sid, BlockIndex=i, BlockData=data,
                                      DataLength=BS, Checksum=b64sha(data),
                                      ChecksumAlgorithm="SHA256")
        if complete:
            lin = hashlib.sha256(b"".join(hashlib.sha256(blocks[i]).digest()
                                          for i in sorted(blocks))).digest()
            r = self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(blocks),
                                         Checksum=base64.b64encode(lin).decode(),
                                         ChecksumAlgorithm="SHA256",
                                         ChecksumAggregationMethod="LINEAR")
            self.assertEqual(r["Status"], "completed")
        return sid

    def list_all(self, sid, **kw):
        out, tok = [], None
        while True:
            args = dict(SnapshotId=sid, MaxResults=kw.get("page", 10000))
            if tok:
                args["NextToken"] = tok
            r = self.c.list_snapshot_blocks(**args)
            out += r["Blocks"]
            tok = r.get("NextToken")
            if not tok:
                return out

    def changed(self, first, second, page=10000):
        out, tok, pages = [], None, 0
        while True:
            args = dict(SecondSnapshotId=second, MaxResults=page)
            if first:
                args["FirstSnapshotId"] = first
            if tok:
                args["NextToken"] = tok
            r = self.c.list_changed_blocks(**args)
            out += r["ChangedBlocks"]
            pages += 1
            tok = r.get("NextToken")
            if not tok:
                return out, pages

    def get(self, sid, index, token):
        r = self.c.get_snapshot_block(SnapshotId=sid, BlockIndex=index, BlockToken=token)
        data = r["BlockData"].read()
        self.assertEqual(r["Checksum"], b64sha(data))
        self.assertEqual(r["DataLength"], BS)
        return data

    def read_all(self, sid):
        return {b["BlockIndex"]: self.get(sid, b["BlockIndex"], b["BlockToken"])
                for b in self.list_all(sid)}


class Lineage(Base):
    def test_lineage_and_changed_blocks(self):
        p = self.write({0: block("p0"), 1: block("p1"), 2: block("p2")})
        c = self.write({1: block("c1"), 3: block("c3")}, parent=p)
        g = self.write({2: block("g2")}, size=2, parent=c)
        s = self.write({0: block("s0")}, parent=p)          # a sibling of c
        self.assertEqual(self.read_all(g), {0: block("p0"), 1: block("c1"), 2: block("g2"),
                                            3: block("c3")})
        self.assertEqual(self.read_all(p), {0: block("p0"), 1: block("p1"), 2: block("p2")})
        idx = lambda cb: [b["BlockIndex"] for b in cb]      # noqa: E731
        self.assertEqual(idx(self.changed(p, g)[0]), [1, 2, 3])
        self.assertEqual(idx(self.changed(c, g)[0]), [2])
        self.assertEqual(idx(self.changed(g, p)[0]), [1, 2, 3])
        self.assertEqual(idx(self.changed(None, c)[0]), [0, 1, 2, 3])
        self.assertEqual(idx(self.changed(s, c)[0]), [0, 1, 3])
        cb = self.changed(p, c)[0]
        first = {b["BlockIndex"]: b for b in cb}
        self.assertIn("FirstBlockToken", first[1])
        self.assertNotIn("FirstBlockToken", first[3])
        self.assertEqual(self.get(p, 1, first[1]["FirstBlockToken"]), block("p1"))
        self.assertEqual(self.get(c, 1, first[1]["SecondBlockToken"]), block("c1"))
        other = self.write({0: block("o0")})
        with self.assertRaises(ClientError) as e:
            self.c.list_changed_blocks(FirstSnapshotId=other, SecondSnapshotId=c)
        self.assertEqual(err(e.exception), ("ValidationException", "UNRELATED_SNAPSHOTS", 400))

    def test_child_smaller_than_parent_refused(self):
        p = self.write({0: block("x")}, size=2)
        with self.assertRaises(ClientError) as e:
            self.c.start_snapshot(VolumeSize=1, ParentSnapshotId=p)
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_VOLUME_SIZE", 400))

    def test_changed_blocks_pages_can_be_empty(self):
        base = emu("synth", "--size-gib", "1", "--seed", "7").decode().strip()
        c = self.write({2000: block("late")}, parent=base)
        cb, pages = self.changed(base, c, page=100)
        self.assertEqual([b["BlockIndex"] for b in cb], [2000])
        self.assertEqual(pages, 21)     # 2048 blocks in pages of 100: 20 empty pages first
        self.assertEqual(self.get(c, 2000, cb[0]["SecondBlockToken"]), block("late"))
        self.assertEqual(self.get(base, 2000, cb[0]["FirstBlockToken"]),
                         emu("synth-block", "--seed", "7", "--index", "2000"))


class StartAndComplete(Base):
    def test_client_token_idempotency(self):
        a = self.c.start_snapshot(VolumeSize=3, ClientToken="tok-1", Description="d")
        b = self.c.start_snapshot(VolumeSize=3, ClientToken="tok-1", Description="d")
        self.assertEqual(a["SnapshotId"], b["SnapshotId"])
        with self.assertRaises(ClientError) as e:
            self.c.start_snapshot(VolumeSize=4, ClientToken="tok-1", Description="d")
        self.assertEqual(err(e.exception)[::2], ("ConflictException", 409))
        d = self.c.start_snapshot(VolumeSize=3, ClientToken="tok-2", Description="d")
        self.assertNotEqual(a["SnapshotId"], d["SnapshotId"])

    def test_start_validation(self):
        p = self.write({0: block("v")})
        cases = [
            (dict(VolumeSize=70000), "INVALID_VOLUME_SIZE"),
            (dict(VolumeSize=1, ParentSnapshotId=p, Encrypted=True), "INVALID_PARAMETER_VALUE"),
        ]
        for args, reason in cases:
            with self.assertRaises(ClientError, msg=args) as e:
                self.c.start_snapshot(**args)
            self.assertEqual(err(e.exception), ("ValidationException", reason, 400), args)
        for body in ({"VolumeSize": 1, "Timeout": 9}, {"VolumeSize": 1, "Timeout": 4321},
                     {"VolumeSize": 0}, {"VolumeSize": "1"}, {"VolumeSize": 1, "Tags": [{"Key": "k" * 128}]}):
            _, r, out = raw("POST", "/snapshots", body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, body)
            self.assertTrue(r.getheader("x-amzn-ErrorType").startswith("ValidationException"), body)
        with self.assertRaises(ClientError) as e:
            self.c.start_snapshot(VolumeSize=1, ParentSnapshotId="snap-0000000000000000f")
        self.assertEqual(err(e.exception), ("ResourceNotFoundException", "SNAPSHOT_NOT_FOUND", 404))
        r = self.c.start_snapshot(VolumeSize=1, Encrypted=True, Tags=[{"Key": "k", "Value": "v"}])
        self.assertEqual(r["SseType"], "sse-ebs")
        self.assertEqual(r["Tags"], [{"Key": "k", "Value": "v"}])

    def test_put_and_complete_validation(self):
        sid = self.c.start_snapshot(VolumeSize=1)["SnapshotId"]
        data = block("pv")
        for kw, reason in [(dict(BlockIndex=2048), "INVALID_BLOCK"),
                           (dict(Checksum=b64sha(b"x")), "INVALID_CONTENT_ENCODING")]:
            args = dict(SnapshotId=sid, BlockIndex=0, BlockData=data, DataLength=BS,
                        Checksum=b64sha(data), ChecksumAlgorithm="SHA256")
            args.update(kw)
            with self.assertRaises(ClientError) as e:
                self.c.put_snapshot_block(**args)
            self.assertEqual(err(e.exception), ("ValidationException", reason, 400))
        # A short body and a wrong data length, on the wire.
        for body, dl in [(data[:1000], str(BS)), (data[:1000], "1000")]:
            _, r, out = raw("PUT", "/snapshots/%s/blocks/1" % sid, body=body, unsigned=True,
                            headers={"x-amz-Data-Length": dl, "x-amz-Checksum": b64sha(body),
                                     "x-amz-Checksum-Algorithm": "SHA256"})
            self.assertEqual(r.status, 400)
            self.assertTrue(r.getheader("x-amzn-ErrorType").startswith("ValidationException"))
            self.assertEqual(json.loads(out)["Reason"], "INVALID_PARAMETER_VALUE")
        # The same block written twice counts once; the last write wins.
        for d in (block("first"), data):
            self.c.put_snapshot_block(SnapshotId=sid, BlockIndex=5, BlockData=d, DataLength=BS,
                                      Checksum=b64sha(d), ChecksumAlgorithm="SHA256")
        with self.assertRaises(ClientError) as e:
            self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=2)
        self.assertEqual(err(e.exception)[0], "ValidationException")
        with self.assertRaises(ClientError) as e:
            self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1, Checksum=b64sha(b"no"),
                                     ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR")
        self.assertEqual(err(e.exception)[0], "ValidationException")
        with self.assertRaises(ClientError) as e:          # pending: not readable yet
            self.c.list_snapshot_blocks(SnapshotId=sid)
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_SNAPSHOT_ID", 400))
        self.assertEqual(self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1)["Status"],
                         "completed")
        # A retried CompleteSnapshot (lost answer) is answered again.
        self.assertEqual(self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=1)["Status"],
                         "completed")
        self.assertEqual(self.read_all(sid), {5: data})
        with self.assertRaises(ClientError) as e:          # completed: no more writes
            self.c.put_snapshot_block(SnapshotId=sid, BlockIndex=0, BlockData=data, DataLength=BS,
                                      Checksum=b64sha(data), ChecksumAlgorithm="SHA256")
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_SNAPSHOT_ID", 400))

    def test_chunked_and_plain_bodies_read_back(self):
        # Plain bodies land in page-aligned buffers and are written with
        # O_DIRECT; a chunked body is joined in an unaligned object and goes
        # through the page cache.  Both must read back, next to each other.
        sid = self.c.start_snapshot(VolumeSize=1)["SnapshotId"]
        blocks = {i: block("mix%d" % i) for i in range(4)}
        for i in (0, 2):
            self.c.put_snapshot_block(SnapshotId=sid, BlockIndex=i, BlockData=blocks[i],
                                      DataLength=BS, Checksum=b64sha(blocks[i]),
                                      ChecksumAlgorithm="SHA256")
        for i in (1, 3):
            path = "/snapshots/%s/blocks/%d" % (sid, i)
            hdrs = {"x-amz-Data-Length": str(BS), "x-amz-Checksum": b64sha(blocks[i]),
                    "x-amz-Checksum-Algorithm": "SHA256",
                    "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "Transfer-Encoding": "chunked"}
            req = AWSRequest(method="PUT", url=URL + path, headers=hdrs)
            SigV4Auth(Credentials(AKID, SECRET), "ebs", "us-east-1").add_auth(req)
            u = urllib.parse.urlsplit(URL)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            data = blocks[i]
            conn.request("PUT", path, body=(data[o:o + 100000] for o in range(0, BS, 100000)),
                         headers=dict(req.headers.items()), encode_chunked=True)
            r = conn.getresponse()
            r.read()
            conn.close()
            self.assertEqual(r.status, 201)
        self.assertEqual(self.c.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=4)["Status"],
                         "completed")
        self.assertEqual(self.read_all(sid), blocks)

    def test_timeout_cancels_idle_pending_snapshots(self):
        # Timeout 10 -> 4 s.  The busy snapshot is written every 0.4 s, so it
        # stays pending unless one request stalls for 3.6 s; the margin is
        # that wide because StartSnapshot and every PUT sync to disk, and a
        # loaded CI machine has stalled an fsync for over a second.
        admin("POST", "/config", {"timeout_unit_s": 0.4})
        t0 = time.monotonic()
        idle = self.c.start_snapshot(VolumeSize=1, Timeout=10)["SnapshotId"]
        busy = self.c.start_snapshot(VolumeSize=1, Timeout=10)["SnapshotId"]
        d = block("t")
        for i in range(12):         # 4.8 s of writes, 0.4 s apart
            self.c.put_snapshot_block(SnapshotId=busy, BlockIndex=i, BlockData=d, DataLength=BS,
                                      Checksum=b64sha(d), ChecksumAlgorithm="SHA256")
            time.sleep(0.4)
        time.sleep(max(0.0, 4.5 - (time.monotonic() - t0)))
        self.assertEqual(self.c.complete_snapshot(SnapshotId=busy, ChangedBlocksCount=12)["Status"],
                         "completed")
        with self.assertRaises(ClientError) as e:
            self.c.put_snapshot_block(SnapshotId=idle, BlockIndex=0, BlockData=d, DataLength=BS,
                                      Checksum=b64sha(d), ChecksumAlgorithm="SHA256")
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_SNAPSHOT_ID", 400))
        snaps = {s["SnapshotId"]: s for s in admin("GET", "/snapshots")}
        self.assertEqual(snaps[idle]["Status"], "error")
        self.assertEqual(snaps[busy]["Status"], "completed")
        self.assertIn(idle, emu("list").decode())


class Tokens(Base):
    def test_block_tokens_expire_and_are_bound(self):
        a = self.write({0: block("a0"), 1: block("a1")})
        b = self.write({0: block("b0")})
        ta = {x["BlockIndex"]: x["BlockToken"] for x in self.list_all(a)}
        tb = self.list_all(b)[0]["BlockToken"]
        self.assertTrue(any(ch in "".join(ta.values()) for ch in "+/="))
        bad = []
        for sid, idx, tok in [(a, 1, ta[0]), (a, 0, tb), (a, 0, ta[0][:-4] + "AAA="),
                              (a, 0, "not base64!")]:
            try:
                self.c.get_snapshot_block(SnapshotId=sid, BlockIndex=idx, BlockToken=tok)
                bad.append((sid, idx, tok))
            except ClientError as e:
                self.assertEqual(err(e), ("ValidationException", "INVALID_BLOCK_TOKEN", 400))
        self.assertEqual(bad, [])
        # A token sent unencoded ('+' '/' '=' raw in the query) fails, as on AWS.
        # Only a token's MAC and expiry are random enough to hold '+' or '/':
        # 8 tokens hold neither in 4% of runs (2000 secrets tried), 64 in
        # about 1e-11.
        a2 = self.write({i: block("e%d" % i) for i in range(64)})
        plus = [x for x in self.list_all(a2) if "+" in x["BlockToken"] or "/" in x["BlockToken"]]
        self.assertTrue(plus)
        x = plus[0]
        _, r, _ = raw("GET", "/snapshots/%s/blocks/%d" % (a2, x["BlockIndex"]),
                      "blockToken=" + x["BlockToken"])
        self.assertIn(r.status, (400, 403))
        _, r, data = raw("GET", "/snapshots/%s/blocks/%d" % (a2, x["BlockIndex"]),
                         "blockToken=" + urllib.parse.quote(x["BlockToken"], safe=""))
        self.assertEqual((r.status, data), (200, block("e%d" % x["BlockIndex"])))
        admin("POST", "/config", {"token_ttl_s": 3})      # expiry: 3..4 s from now
        r = self.c.list_snapshot_blocks(SnapshotId=a)
        self.assertLess(r["ExpiryTime"].timestamp() - time.time(), 4.5)
        tok = r["Blocks"][0]["BlockToken"]
        self.assertEqual(self.get(a, 0, tok), block("a0"))
        time.sleep(4.2)
        with self.assertRaises(ClientError) as e:
            self.c.get_snapshot_block(SnapshotId=a, BlockIndex=0, BlockToken=tok)
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_BLOCK_TOKEN", 400))

    def test_pages_and_page_tokens(self):
        sid = emu("synth", "--size-gib", "1", "--every", "3").decode().strip()
        allb = self.list_all(sid, page=100)
        self.assertEqual([x["BlockIndex"] for x in allb], list(range(0, 2048, 3)))
        r = self.c.list_snapshot_blocks(SnapshotId=sid, MaxResults=100, StartingBlockIndex=2000)
        self.assertEqual([x["BlockIndex"] for x in r["Blocks"]], list(range(2001, 2048, 3)))
        self.assertNotIn("NextToken", r)
        r = self.c.list_snapshot_blocks(SnapshotId=sid, MaxResults=100)
        other = self.write({0: block("o")})
        for sid2, tok in [(sid, r["NextToken"][:-2] + "AA"), (other, r["NextToken"])]:
            with self.assertRaises(ClientError) as e:
                self.c.list_snapshot_blocks(SnapshotId=sid2, NextToken=tok)
            self.assertEqual(err(e.exception), ("ValidationException", "INVALID_PAGE_TOKEN", 400))
        for q in ("maxResults=99", "maxResults=10001", "maxResults=abc", "startingBlockIndex=-1"):
            _, resp, out = raw("GET", "/snapshots/%s/blocks" % sid, q)
            self.assertEqual(resp.status, 400, q)
            self.assertEqual(json.loads(out)["Reason"], "INVALID_PARAMETER_VALUE")
        _, resp, out = raw("GET", "/snapshots/%s/blocks" % sid, "maxResults=100")
        self.assertEqual(resp.status, 200)
        admin("POST", "/config", {"page_token_ttl_s": 0})
        r = self.c.list_snapshot_blocks(SnapshotId=sid, MaxResults=100)
        time.sleep(1.1)
        with self.assertRaises(ClientError) as e:
            self.c.list_snapshot_blocks(SnapshotId=sid, NextToken=r["NextToken"])
        self.assertEqual(err(e.exception), ("ValidationException", "INVALID_PAGE_TOKEN", 400))


class Faults(Base):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sid = emu("synth", "--size-gib", "1", "--seed", "3").decode().strip()
        cls.toks = {b["BlockIndex"]: b["BlockToken"]
                    for b in cls.c.list_snapshot_blocks(SnapshotId=cls.sid, MaxResults=100)["Blocks"]}
        cls.want = {i: emu("synth-block", "--seed", "3", "--index", str(i)) for i in (0, 1, 2, 3)}

    def rawget(self, i, timeout=10, read=True):
        q = "blockToken=" + urllib.parse.quote(self.toks[i], safe="")
        return raw("GET", "/snapshots/%s/blocks/%d" % (self.sid, i), q, timeout=timeout, read=read)

    def test_error_faults_and_counters(self):
        admin("POST", "/counters/reset")
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "500", "count": 2},
                                  {"op": "GetSnapshotBlock", "kind": "503", "count": 1},
                                  {"op": "GetSnapshotBlock", "kind": "throttle", "count": 1}])
        seen = []
        for _ in range(5):
            try:
                self.assertEqual(self.get(self.sid, 1, self.toks[1]), self.want[1])
                seen.append("ok")
            except ClientError as e:
                seen.append(err(e)[::2])
        self.assertEqual(seen, [("InternalServerException", 500)] * 2 +
                         [("ServiceUnavailableException", 503), ("RequestThrottledException", 400),
                          "ok"])
        cnt = admin("GET", "/counters")
        self.assertEqual(cnt["GetSnapshotBlock"], 5)
        self.assertEqual(cnt["faults"], {"500": 2, "503": 1, "throttle": 1})
        self.assertEqual(cnt["by_status"]["GetSnapshotBlock"], {"500": 2, "503": 1, "400": 1, "200": 1})
        self.assertEqual(cnt["by_snapshot"][self.sid]["GetSnapshotBlock"], 5)
        self.assertEqual([r["fired"] for r in admin("GET", "/faults")], [2, 1, 1])

    def test_targeted_and_probabilistic_faults(self):
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "500", "block_index": 2},
                                  {"op": "ListSnapshotBlocks", "kind": "500", "probability": 0}])
        self.assertEqual(self.get(self.sid, 1, self.toks[1]), self.want[1])
        with self.assertRaises(ClientError):
            self.get(self.sid, 2, self.toks[2])
        self.c.list_snapshot_blocks(SnapshotId=self.sid, MaxResults=100)
        admin("POST", "/faults", [{"kind": "500", "probability": 0.5}])
        n = 0
        for _ in range(40):
            try:
                self.c.list_snapshot_blocks(SnapshotId=self.sid, MaxResults=100)
            except ClientError:
                n += 1
        self.assertTrue(5 <= n <= 35, n)
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "delay", "delay_ms": 300,
                                   "count": 1}])
        t = time.monotonic()
        self.get(self.sid, 0, self.toks[0])
        self.assertGreaterEqual(time.monotonic() - t, 0.3)
        with self.assertRaises(urllib.error.HTTPError):
            admin("POST", "/faults", [{"kind": "explode"}])

    def test_body_faults(self):
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "corrupt", "count": 1}])
        _, r, data = self.rawget(0)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(data), BS)
        self.assertNotEqual(r.getheader("x-amz-Checksum"), b64sha(data))
        self.assertEqual(r.getheader("x-amz-Checksum"), b64sha(self.want[0]))
        for kind in ("short", "reset"):
            admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": kind, "count": 1}])
            with self.assertRaises((http.client.IncompleteRead, ConnectionError), msg=kind):
                self.rawget(0)
        # The stall holds the body for 10 s; the client gives up after 2 s
        # of silence (a loaded machine can take most of a second to send the
        # headers), well before the stall would end.
        admin("POST", "/config", {"stall_s": 10})
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "stall", "count": 1}])
        t = time.monotonic()
        conn, r, _ = self.rawget(0, timeout=2, read=False)
        self.assertEqual(r.status, 200)
        with self.assertRaises(socket.timeout):
            r.read()
        self.assertLess(time.monotonic() - t, 8)
        conn.close()
        # The server is fine afterwards.
        self.assertEqual(self.rawget(0)[2], self.want[0])

    def test_latency(self):
        # Every answer, errors too, leaves the latency after the request came
        # in; a delay fault adds to it.
        admin("POST", "/config", {"latency_ms": 200})
        t = time.monotonic()
        self.c.list_snapshot_blocks(SnapshotId=self.sid, MaxResults=100)
        self.assertGreaterEqual(time.monotonic() - t, 0.2)
        t = time.monotonic()
        with self.assertRaises(ClientError) as e:
            self.c.list_snapshot_blocks(SnapshotId="snap-0123456789abcdef0")
        self.assertEqual(err(e.exception)[2], 404)
        self.assertGreaterEqual(time.monotonic() - t, 0.2)
        admin("POST", "/faults", [{"op": "GetSnapshotBlock", "kind": "delay", "delay_ms": 300,
                                   "count": 1}])
        t = time.monotonic()
        self.assertEqual(self.get(self.sid, 0, self.toks[0]), self.want[0])
        self.assertGreaterEqual(time.monotonic() - t, 0.5)

    def test_rate_limit(self):
        admin("POST", "/config", {"rate_limit": 5})
        other = self.write({0: block("rl")})
        otok = self.list_all(other)[0]["BlockToken"]
        res = {"ok": 0, "throttled": 0, "other": []}
        lock = threading.Lock()

        def worker():
            for _ in range(20):
                try:
                    self.c.get_snapshot_block(SnapshotId=self.sid, BlockIndex=1,
                                              BlockToken=self.toks[1])["BlockData"].read()
                    k = "ok"
                except ClientError as e:
                    k = "throttled" if err(e) == ("RequestThrottledException",
                                                  "RESOURCE_LEVEL_THROTTLE", 400) else None
                    if k is None:
                        res["other"].append(err(e))
                        continue
                with lock:
                    res[k] += 1
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(res["other"], [])
        self.assertGreater(res["throttled"], 0)
        self.assertGreaterEqual(res["ok"], 5)
        # Another snapshot has its own budget.
        self.assertEqual(self.get(other, 0, otok), block("rl"))
        self.assertGreater(admin("GET", "/counters")["throttled"], 0)


class Connections(Base):
    def test_many_new_connections_at_once_are_all_served(self):
        # More connections at once than the server keeps threads waiting in
        # accept() (32): the pool must grow, and every connection must stay
        # usable for a second request (keep-alive).
        sid = self.write({0: block("conn")})
        path = "/snapshots/%s/blocks" % sid
        u = urllib.parse.urlsplit(URL)
        n = 80
        conns = [http.client.HTTPConnection(u.hostname, u.port, timeout=30) for _ in range(n)]
        for c in conns:
            c.connect()
        errors = []
        # Nobody closes before everyone has an answer: a pool that did not
        # grow would leave connections unserved here.
        all_answered = threading.Barrier(n, timeout=20)

        def one(c):
            try:
                for i in range(2):
                    req = AWSRequest(method="GET", url=URL + path, data=b"")
                    SigV4Auth(Credentials(AKID, SECRET), "ebs", "us-east-1").add_auth(req)
                    c.request("GET", path, headers=dict(req.headers.items()))
                    resp = c.getresponse()
                    body = json.loads(resp.read())
                    if resp.status != 200 or body["Blocks"][0]["BlockIndex"] != 0:
                        errors.append((resp.status, body))
                    if i == 0:
                        all_answered.wait()
            except Exception as e:          # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                c.close()

        admin("POST", "/config", {"latency_ms": 100})
        threads = [threading.Thread(target=one, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a connection was never served")
        self.assertEqual(errors, [])


class ImportExport(Base):
    def test_round_trip(self):
        img = os.path.join(TMP, "rt.img")
        size = 5 * BS + 12345                     # a partial last block
        with open(img, "wb") as f:
            f.write(os.urandom(BS))               # block 0: data
            f.write(bytes(BS))                    # block 1: explicit zeros
            f.seek(3 * BS + 100)                  # block 2: a hole; block 3: data
            f.write(b"x" * 5000)
            f.seek(5 * BS)
            f.write(os.urandom(12345))            # block 5: partial
        sid = emu("import", img, "--description", "rt").decode().strip()
        self.assertEqual([b["BlockIndex"] for b in self.list_all(sid)], [0, 3, 5])
        r = self.c.list_snapshot_blocks(SnapshotId=sid)
        self.assertEqual(r["VolumeSize"], 1)
        got = self.read_all(sid)
        src = slurp(img)
        self.assertEqual(got[0], src[:BS])
        self.assertEqual(got[5], src[5 * BS:] + bytes(BS - 12345))
        out = os.path.join(TMP, "rt.out")
        emu("export", sid, out, "--size", str(size))
        self.assertEqual(slurp(out), src)
        emu("export", sid, out)
        self.assertEqual(os.path.getsize(out), 1 << 30)
        with open(out, "rb") as f:
            self.assertEqual(f.read(size), src)
            self.assertEqual(f.read(BS), bytes(BS))
        self.assertLess(os.stat(out).st_blocks * 512, 64 << 20)     # holes stay holes
        keep = emu("import", "--keep-zero-blocks", img).decode().strip()
        self.assertEqual([b["BlockIndex"] for b in self.list_all(keep)], [0, 1, 2, 3, 4, 5])
        # An API-written snapshot exports too.
        w = self.write({2: block("w2")}, parent=sid)
        emu("export", w, out, "--size", str(size))
        with open(out, "rb") as f:
            d = f.read()
        self.assertEqual(d[2 * BS:3 * BS], block("w2"))
        self.assertEqual(d[:BS], src[:BS])
        os.unlink(out)
        os.unlink(img)


class Synthetic(Base):
    def test_16_tib(self):
        t = time.monotonic()
        sid = emu("synth", "--size-gib", "16384", "--every", "8", "--seed", "11").decode().strip()
        made = time.monotonic() - t
        r = self.c.list_snapshot_blocks(SnapshotId=sid, MaxResults=10000)
        self.assertEqual(r["VolumeSize"], 16384)
        self.assertEqual([b["BlockIndex"] for b in r["Blocks"]], list(range(0, 80000, 8)))
        last = 16384 * 2048 - 8
        r = self.c.list_snapshot_blocks(SnapshotId=sid, MaxResults=10000, StartingBlockIndex=last - 80)
        self.assertEqual([b["BlockIndex"] for b in r["Blocks"]], list(range(last - 80, last + 1, 8)))
        self.assertNotIn("NextToken", r)
        self.assertEqual(self.get(sid, last, r["Blocks"][-1]["BlockToken"]),
                         emu("synth-block", "--seed", "11", "--index", str(last)))
        listed = [l for l in emu("list").decode().splitlines() if l.startswith(sid)]
        self.assertIn("blocks=4194304", listed[0])
        sys.stderr.write("synth 16 TiB (4194304 listed blocks) created in %.2f s\n" % made)


class SessionToken(unittest.TestCase):
    """Needs the emulator started with --credentials ASIATEST:sekrit:tok3n."""

    def test_session_token(self):
        ok = client(akid="ASIATEST", secret="sekrit", token="tok3n")
        ok.list_snapshot_blocks(SnapshotId=emu("synth", "--size-gib", "1").decode().strip(),
                                MaxResults=100)
        for kw in (dict(token=None), dict(token="wrong")):
            c = client(akid="ASIATEST", secret="sekrit", **kw)
            with self.assertRaises(ClientError) as e:
                c.list_snapshot_blocks(SnapshotId="snap-0123", MaxResults=100)
            self.assertEqual(err(e.exception)[::2], ("UnrecognizedClientException", 403))


# -- persistence across restarts ------------------------------------------------------
def prepare(state):
    b = Base()
    b.c = client()
    done = b.write({0: block("keep0"), 7: block("keep7")})
    child = b.write({7: block("child7")}, parent=done)
    pend = b.c.start_snapshot(VolumeSize=1, ClientToken="restart-token")["SnapshotId"]
    d = block("pend1")
    b.c.put_snapshot_block(SnapshotId=pend, BlockIndex=1, BlockData=d, DataLength=BS,
                           Checksum=b64sha(d), ChecksumAlgorithm="SHA256")
    tok = b.list_all(done)[0]["BlockToken"]
    with open(state, "w") as f:
        json.dump({"done": done, "child": child, "pending": pend, "token": tok}, f)


def verify(state):
    with open(state) as f:
        s = json.load(f)
    b = Base()
    b.c = client()
    b.assertEqual(b.read_all(s["done"]), {0: block("keep0"), 7: block("keep7")})
    b.assertEqual(b.read_all(s["child"]), {0: block("keep0"), 7: block("child7")})
    b.assertEqual(b.get(s["done"], 0, s["token"]), block("keep0"))   # tokens survive restarts
    again = b.c.start_snapshot(VolumeSize=1, ClientToken="restart-token")["SnapshotId"]
    b.assertEqual(again, s["pending"])
    b.assertEqual(b.c.complete_snapshot(SnapshotId=s["pending"], ChangedBlocksCount=1)["Status"],
                  "completed")
    b.assertEqual(b.read_all(s["pending"]), {1: block("pend1")})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("prepare", "verify"):
        (prepare if sys.argv[1] == "prepare" else verify)(sys.argv[2])
        print("%s: ok" % sys.argv[1])
        sys.exit(0)
    unittest.main(verbosity=2)
