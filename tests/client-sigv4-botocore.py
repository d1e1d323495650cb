"""client-sigv4-botocore.py - does ebsfs sign exactly as the AWS SDK does?

For each of the six EBS operations (several parameter sets, with and without
a session token, on three kinds of endpoint) this has the real botocore EBS
client build and sign the request at a fixed time (the send is intercepted,
nothing leaves the process), and has src/sigv4_dump sign the request as
ebsfs describes it - method, path, query, headers per EBS-DIRECT-API.md,
written out here independently of what botocore produced.  The
Authorization, X-Amz-Date and X-Amz-Content-SHA256 values and the wire query
must match byte for byte.

Usage: client-sigv4-botocore.py SIGV4_DUMP.  Exit 0 pass, 1 fail, 77 when
botocore cannot be imported.
"""
import datetime
import subprocess
import sys
import urllib.parse

try:
    import botocore
    import botocore.auth
    import botocore.session
except ImportError as e:
    print(f"SKIP: botocore cannot be imported by {sys.executable}: {e}", file=sys.stderr)
    sys.exit(77)

FIXED = datetime.datetime(2026, 11, 23, 8, 30, 0)
FIXED_EPOCH = int(FIXED.replace(tzinfo=datetime.timezone.utc).timestamp())

# botocore >= 1.32 reads the clock through get_current_datetime; older ones
# call datetime.datetime.utcnow() inside botocore.auth.
if hasattr(botocore.auth, "get_current_datetime"):
    botocore.auth.get_current_datetime = lambda *a, **k: FIXED
else:
    class _FixedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return FIXED
    class _DatetimeModule:
        datetime = _FixedDatetime
    botocore.auth.datetime = _DatetimeModule

AKID = "AKIDEBSFSTEST0001"
SECRET = "ebsfs/Test+Secret/Key0123456789abcdefABCDEF"
TOKEN = "IQoJb3JpZ2luX2VjEHEaCXVzLWVhc3QtMSJHMEUCIQ+ebsfs/session/token=="

BLOCK = bytes(range(256)) * 2048          # 512 KiB, never hashed (UNSIGNED-PAYLOAD)


class Intercepted(Exception):
    pass


def botocore_sign(endpoint, region, token, op, params):
    """Return (headers, url, body) of the request botocore would send."""
    session = botocore.session.get_session()
    kwargs = dict(region_name=region, aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    if token:
        kwargs["aws_session_token"] = token
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    client = session.create_client("ebs", **kwargs)
    seen = {}

    def before_send(request, **_):
        seen["headers"] = {k.lower(): (v.decode() if isinstance(v, bytes) else str(v))
                           for k, v in request.headers.items()}
        seen["url"] = request.url
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        seen["body"] = body if isinstance(body, bytes) else (body or "").encode()
        raise Intercepted()

    client.meta.events.register("before-send", before_send)
    try:
        getattr(client, op)(**params)
    except Intercepted:
        pass
    return seen["headers"], seen["url"], seen["body"]


def ebsfs_describe(op, p):
    """The request as ebsfs's transport builds it: (method, path, query,
    headers, unsigned_payload)."""
    q, h = [], []
    if op == "start_snapshot":
        return "POST", "/snapshots", q, [("Content-Type", "application/json")], False
    if op == "put_snapshot_block":
        h = [("x-amz-Data-Length", str(p["DataLength"])),
             ("x-amz-Checksum", p["Checksum"]),
             ("x-amz-Checksum-Algorithm", p["ChecksumAlgorithm"])]
        if "Progress" in p:
            h.append(("x-amz-Progress", str(p["Progress"])))
        return "PUT", f"/snapshots/{p['SnapshotId']}/blocks/{p['BlockIndex']}", q, h, True
    if op == "complete_snapshot":
        h = [("x-amz-ChangedBlocksCount", str(p["ChangedBlocksCount"]))]
        for key, name in (("Checksum", "x-amz-Checksum"),
                          ("ChecksumAlgorithm", "x-amz-Checksum-Algorithm"),
                          ("ChecksumAggregationMethod", "x-amz-Checksum-Aggregation-Method")):
            if key in p:
                h.append((name, p[key]))
        return "POST", f"/snapshots/completion/{p['SnapshotId']}", q, h, False
    if op in ("list_snapshot_blocks", "list_changed_blocks"):
        for key, name in (("FirstSnapshotId", "firstSnapshotId"), ("MaxResults", "maxResults"),
                          ("NextToken", "pageToken"), ("StartingBlockIndex", "startingBlockIndex")):
            if key in p:
                q.append((name, str(p[key])))
        if op == "list_snapshot_blocks":
            return "GET", f"/snapshots/{p['SnapshotId']}/blocks", q, h, False
        return "GET", f"/snapshots/{p['SecondSnapshotId']}/changedblocks", q, h, False
    if op == "get_snapshot_block":
        q.append(("blockToken", p["BlockToken"]))
        return "GET", f"/snapshots/{p['SnapshotId']}/blocks/{p['BlockIndex']}", q, h, False
    raise ValueError(op)


CASES = [
    ("start_snapshot", dict(VolumeSize=8, ClientToken="ebsfs-0001", Timeout=60)),
    ("start_snapshot", dict(VolumeSize=65536, ParentSnapshotId="snap-0123456789abcdef0",
                            Description="ebsfs commit", ClientToken="c0ffee",
                            Tags=[{"Key": "k", "Value": "v w"}])),
    ("put_snapshot_block", dict(SnapshotId="snap-0123456789abcdef0", BlockIndex=0,
                                BlockData=BLOCK, DataLength=524288,
                                Checksum="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                                ChecksumAlgorithm="SHA256")),
    ("put_snapshot_block", dict(SnapshotId="snap-0123456789abcdef0", BlockIndex=33554431,
                                BlockData=BLOCK, DataLength=524288, Progress=42,
                                Checksum="ZmFrZQ+/=", ChecksumAlgorithm="SHA256")),
    ("complete_snapshot", dict(SnapshotId="snap-0123456789abcdef0", ChangedBlocksCount=0)),
    ("complete_snapshot", dict(SnapshotId="snap-0123456789abcdef0", ChangedBlocksCount=12345,
                               Checksum="bGluZWFy+/=", ChecksumAlgorithm="SHA256",
                               ChecksumAggregationMethod="LINEAR")),
    ("list_snapshot_blocks", dict(SnapshotId="snap-0123456789abcdef0")),
    ("list_snapshot_blocks", dict(SnapshotId="snap-0123456789abcdef0", MaxResults=10000,
                                  NextToken="AAUBAfhT+/pageToken==", StartingBlockIndex=77)),
    ("list_changed_blocks", dict(SecondSnapshotId="snap-0123456789abcdef0")),
    ("list_changed_blocks", dict(SecondSnapshotId="snap-0123456789abcdef0",
                                 FirstSnapshotId="snap-00000000000000001", MaxResults=100,
                                 NextToken="AAUBAfhT+/x=", StartingBlockIndex=5)),
    ("get_snapshot_block", dict(SnapshotId="snap-0123456789abcdef0", BlockIndex=7,
                                BlockToken="AAUBARlTkz+/BlockToken/with/slashes==")),
]

# (endpoint_url or None for the default, region, Host that ebsfs signs)
ENDPOINTS = [
    ("http://127.0.0.1:8080", "us-east-1", "127.0.0.1:8080"),
    (None, "eu-west-1", "ebs.eu-west-1.amazonaws.com"),
    ("https://ebs.ap-southeast-2.amazonaws.com:443", "ap-southeast-2",
     "ebs.ap-southeast-2.amazonaws.com"),          # default port: not in Host
]


def dump_sign(dump, method, host, path, query, headers, unsigned, body, region, token):
    lines = [f"method {method}", f"host {host}", f"path {path}", f"region {region}",
             "service ebs", f"time {FIXED_EPOCH}", f"access-key {AKID}", f"secret-key {SECRET}"]
    if token:
        lines.append(f"token {token}")
    lines += [f"query {k} {v}" for k, v in query]
    lines += [f"header {k} {v}" for k, v in headers]
    if unsigned:
        lines.append("unsigned-payload")
    elif body:
        lines.append("body-hex " + body.hex())
    r = subprocess.run([dump], input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"sigv4_dump failed ({r.returncode}): {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(": ")
        out[k.lower()] = v
    return out


def main():
    dump = sys.argv[1]
    failures = checked = 0
    for endpoint, region, host in ENDPOINTS:
        for token in (None, TOKEN):
            for op, params in CASES:
                bh, url, body = botocore_sign(endpoint, region, token, op, params)
                method, path, query, headers, unsigned = ebsfs_describe(op, params)
                # The body is the payload as sent; ebsfs's JSON may be spelled
                # differently but is hashed the same way, so sign botocore's.
                ours = dump_sign(dump, method, host, path, query, headers, unsigned,
                                 b"" if unsigned else body, region, token)
                parsed = urllib.parse.urlsplit(url)
                name = f"{op} {params.get('BlockIndex', '')} via {endpoint or 'default'}" \
                       f"{' +token' if token else ''}"
                problems = []
                if parsed.path != path:
                    problems.append(f"path: botocore {parsed.path!r}, ebsfs {path!r}")
                if sorted(filter(None, parsed.query.split("&"))) != sorted(filter(None, ours["query"].split("&"))):
                    problems.append(f"query: botocore {parsed.query!r}, ebsfs {ours['query']!r}")
                for k in ("authorization", "x-amz-date", "x-amz-content-sha256"):
                    if bh.get(k) != ours.get(k):
                        problems.append(f"{k}:\n    botocore {bh.get(k)}\n    ebsfs    {ours.get(k)}")
                if token and bh.get("x-amz-security-token") != token:
                    problems.append("botocore did not send the session token")
                checked += 1
                if problems:
                    failures += 1
                    print(f"FAIL {name}", file=sys.stderr)
                    for pr in problems:
                        print("  " + pr, file=sys.stderr)
                else:
                    print(f"ok   {name}")
    print(f"{checked - failures}/{checked} requests signed identically "
          f"(botocore {botocore.__version__})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
