"""The six EBS direct API operations, with AWS's validation and errors.

Each operation takes what the HTTP layer parsed (path parameters, decoded
query, a header getter, the body) and returns (status, headers, body bytes),
or raises ApiError, which the HTTP layer turns into AWS's error shape.
"""

import base64
import binascii
import hashlib
import json
import math
import re
import threading
import time

from . import BLOCK_SIZE, BLOCKS_PER_GIB, MAX_VOLUME_GIB
from .store import OWNER_ID, new_snapshot_id
from .tokens import KIND_BLOCK, KIND_PAGE_BLOCKS, KIND_PAGE_CHANGED, TokenError

SNAP_RE = re.compile(r"^snap-[0-9a-f]+$")
B64_RE = re.compile(r"^[A-Za-z0-9+/=]+$")
CLIENT_TOKEN_RE = re.compile(r"^[\S]+$")
KMS_RE = re.compile(r"^arn:aws[a-z\-]*:kms:.*:[0-9]{12}:key/.*$")
DEFAULT_MAX_RESULTS = 10000


class ApiError(Exception):
    def __init__(self, status, code, message, reason=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason


def validation(message, reason="INVALID_PARAMETER_VALUE"):
    return ApiError(400, "ValidationException", message, reason)


def not_found(sid):
    return ApiError(404, "ResourceNotFoundException",
                    "The snapshot '%s' does not exist." % sid, "SNAPSHOT_NOT_FOUND")


def _json(status, obj, headers=()):
    return status, [("Content-Type", "application/json")] + list(headers), \
        json.dumps(obj, separators=(",", ":")).encode()


def _int(value, name, lo=0, hi=None):
    try:
        if not re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
            raise ValueError
        v = int(value)
    except (ValueError, AttributeError):
        raise validation("Value '%s' at '%s' failed to satisfy constraint: Member must be an integer"
                         % (value, name))
    if v < lo or (hi is not None and v > hi):
        raise validation("Value '%d' at '%s' failed to satisfy constraint: Member must have value "
                         "%s" % (v, name, ">= %d" % lo if hi is None else
                                 "between %d and %d" % (lo, hi)))
    return v


class Api:
    def __init__(self, store, tokens, config):
        self.store = store
        self.tokens = tokens
        self.config = config        # object with token_ttl_s, page_token_ttl_s, timeout_unit_s, max_pending
        self.start_lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------
    def _snapshot(self, sid):
        if not sid or len(sid) > 64 or not SNAP_RE.match(sid):
            raise validation("Value '%s' at 'snapshotId' failed to satisfy constraint: Member must "
                             "satisfy regular expression pattern: ^snap-[0-9a-f]+$" % sid,
                             "INVALID_SNAPSHOT_ID")
        s = self.store.get(sid)
        if s is None:
            raise not_found(sid)
        self.check_timeout(s)
        return s

    def check_timeout(self, s):
        """Cancel (status error) a pending snapshot idle for longer than its Timeout."""
        if s.status != "pending":
            return
        limit = float(s.meta.get("Timeout", 60)) * self.config.timeout_unit_s
        if time.time() - s.last_activity > limit:
            with s.lock:
                if s.status == "pending":
                    s.meta["Status"] = "error"
                    s.meta["StatusMessage"] = "Snapshot timed out: no activity for %d minutes" \
                        % int(s.meta.get("Timeout", 60))
                    s.save_meta()

    def _readable(self, s):
        if s.status != "completed":
            raise validation("The snapshot '%s' is in the '%s' state; only completed snapshots "
                             "can be read." % (s.id, s.status), "INVALID_SNAPSHOT_ID")

    def _block_index(self, s, value):
        idx = _int(value, "blockIndex", 0)
        if idx >= s.nblocks:
            raise validation("The block index %d is outside the volume (%d GiB = %d blocks)."
                             % (idx, s.nblocks // BLOCKS_PER_GIB, s.nblocks), "INVALID_BLOCK")
        return idx

    def _max_results(self, query):
        v = query.get("maxResults")
        if v is None:
            return DEFAULT_MAX_RESULTS
        return _int(v, "maxResults", 100, 10000)

    def _page_start(self, query, kind, bound, now):
        tok = query.get("pageToken")
        if tok is not None:
            if len(tok) > 256 or not B64_RE.match(tok):
                raise validation("The pagination token is not valid.", "INVALID_PAGE_TOKEN")
            try:
                return self.tokens.parse(tok, kind, bound, now)
            except TokenError as e:
                raise validation("The pagination token is not valid: %s." % e, "INVALID_PAGE_TOKEN")
        v = query.get("startingBlockIndex")
        return 0 if v is None else _int(v, "startingBlockIndex", 0)

    def _block_token(self, sid, index, expiry):
        return self.tokens.make(KIND_BLOCK, expiry, index, sid)

    # -- StartSnapshot -----------------------------------------------------------------
    def start_snapshot(self, body):
        try:
            req = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(req, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "SerializationException", "Request body is not valid JSON")
        vs = req.get("VolumeSize")
        if not isinstance(vs, int) or isinstance(vs, bool):
            raise validation("VolumeSize is required and must be an integer", "INVALID_VOLUME_SIZE")
        if vs < 1 or vs > MAX_VOLUME_GIB:
            raise validation("The volume size %d GiB is not in 1..%d." % (vs, MAX_VOLUME_GIB),
                             "INVALID_VOLUME_SIZE")
        parent_id = req.get("ParentSnapshotId")
        encrypted = req.get("Encrypted")
        kms = req.get("KmsKeyArn")
        desc = req.get("Description")
        tags = req.get("Tags") or []
        timeout = req.get("Timeout", 60)
        ctoken = req.get("ClientToken")
        if encrypted is not None and not isinstance(encrypted, bool):
            raise validation("Encrypted must be a boolean")
        if parent_id is not None and encrypted is not None:
            raise validation("You cannot specify Encrypted together with ParentSnapshotId; an "
                             "incremental snapshot inherits the parent's encryption.")
        if kms is not None and (not isinstance(kms, str) or not 1 <= len(kms) <= 2048
                                or not KMS_RE.match(kms)):
            raise validation("KmsKeyArn is not a valid KMS key ARN", "INVALID_CUSTOMER_KEY")
        if kms is not None and not encrypted:
            raise validation("KmsKeyArn requires Encrypted=true", "INVALID_CUSTOMER_KEY")
        if desc is not None and (not isinstance(desc, str) or len(desc) > 255):
            raise validation("Description must be a string of at most 255 characters")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 10 <= timeout <= 4320:
            raise validation("Value '%s' at 'timeout' failed to satisfy constraint: Member must "
                             "have value between 10 and 4320" % (timeout,))
        if not isinstance(tags, list) or any(
                not isinstance(t, dict) or not isinstance(t.get("Key", ""), str)
                or not isinstance(t.get("Value", ""), str)
                or len(t.get("Key", "")) > 127 or len(t.get("Value", "")) > 255 for t in tags):
            raise validation("Tags are not valid", "INVALID_TAG")
        if ctoken is not None and (not isinstance(ctoken, str) or not 1 <= len(ctoken) <= 255
                                   or not CLIENT_TOKEN_RE.match(ctoken)):
            raise validation("ClientToken is not valid")
        parent = None
        if parent_id is not None:
            parent = self._snapshot(parent_id)
            self._readable(parent)
            if int(parent.meta["VolumeSize"]) > vs:
                raise validation("The volume size %d GiB is smaller than the parent snapshot's "
                                 "%s GiB." % (vs, parent.meta["VolumeSize"]), "INVALID_VOLUME_SIZE")
        fingerprint = hashlib.sha256(json.dumps(
            {k: v for k, v in req.items() if k != "ClientToken"}, sort_keys=True).encode()).hexdigest()

        with self.start_lock:
            if ctoken is not None:
                sid = self.store.client_tokens.get(ctoken)
                if sid is not None:
                    s = self.store.get(sid)
                    if s is not None:
                        if s.meta.get("Fingerprint") != fingerprint:
                            raise ApiError(409, "ConflictException",
                                           "The ClientToken '%s' was already used with different "
                                           "parameters." % ctoken)
                        return _json(201, self._start_response(s))
            pending = sum(1 for x in list(self.store.snapshots.values()) if x.status == "pending")
            if self.config.max_pending and pending >= self.config.max_pending:
                raise ApiError(400, "ConcurrentLimitExceededException",
                               "You have reached the limit of %d concurrent pending snapshots."
                               % self.config.max_pending)
            now = time.time()
            meta = {
                "SnapshotId": new_snapshot_id(), "OwnerId": OWNER_ID, "Status": "pending",
                "StartTime": now, "LastActivity": now, "VolumeSize": vs,
                "BlockSize": BLOCK_SIZE, "Timeout": timeout, "Fingerprint": fingerprint,
            }
            if tags:
                meta["Tags"] = tags
            if parent_id:
                meta["ParentSnapshotId"] = parent_id
                if parent.meta.get("Encrypted"):
                    meta["Encrypted"] = True
                    meta["KmsKeyArn"] = parent.meta.get("KmsKeyArn")
            if encrypted:
                meta["Encrypted"] = True
                meta["KmsKeyArn"] = kms or ("arn:aws:kms:us-east-1:%s:key/ebsemu-default" % OWNER_ID)
            if desc is not None:
                meta["Description"] = desc
            if ctoken is not None:
                meta["ClientToken"] = ctoken
            s = self.store.create(meta)
        return _json(201, self._start_response(s))

    @staticmethod
    def _start_response(s):
        m = s.meta
        out = {"SnapshotId": s.id, "OwnerId": m["OwnerId"], "Status": m["Status"],
               "StartTime": m["StartTime"], "VolumeSize": m["VolumeSize"],
               "BlockSize": BLOCK_SIZE,
               "SseType": "sse-ebs" if m.get("Encrypted") else "none"}
        for k in ("Tags", "ParentSnapshotId", "KmsKeyArn", "Description"):
            if m.get(k) is not None:
                out[k] = m[k]
        return out

    # -- PutSnapshotBlock --------------------------------------------------------------
    def put_block(self, sid, index_s, header, body):
        s = self._snapshot(sid)
        if s.status != "pending":
            raise validation("The snapshot '%s' is in the '%s' state; blocks can only be written "
                             "to pending snapshots." % (sid, s.status), "INVALID_SNAPSHOT_ID")
        index = self._block_index(s, index_s)
        dl = header("x-amz-data-length")
        cs = header("x-amz-checksum")
        alg = header("x-amz-checksum-algorithm")
        if dl is None or cs is None or alg is None:
            raise validation("x-amz-Data-Length, x-amz-Checksum and x-amz-Checksum-Algorithm are "
                             "required")
        if _int(dl, "dataLength", 0) != BLOCK_SIZE:
            raise validation("The data length must be %d bytes." % BLOCK_SIZE)
        if alg != "SHA256":
            raise validation("Value '%s' at 'checksumAlgorithm' failed to satisfy constraint: "
                             "Member must satisfy enum value set: [SHA256]" % alg)
        prog = header("x-amz-progress")
        if prog is not None:
            _int(prog, "progress", 0, 100)
        if len(body) != BLOCK_SIZE:
            raise validation("Failed to read block data: got %d bytes, expected %d."
                             % (len(body), BLOCK_SIZE))
        if len(cs) > 64 or not B64_RE.match(cs):
            raise validation("Value at 'checksum' failed to satisfy constraint: Member must "
                             "satisfy regular expression pattern: ^[A-Za-z0-9+/=]+$")
        digest = hashlib.sha256(body).digest()
        try:
            want = base64.b64decode(cs, validate=True)
        except (binascii.Error, ValueError):
            want = b""
        if want != digest:
            raise validation("The checksum in x-amz-Checksum does not match the SHA256 of the "
                             "block data.", "INVALID_CONTENT_ENCODING")
        self.check_timeout(s)
        if s.status != "pending":
            raise validation("The snapshot '%s' is in the '%s' state." % (sid, s.status),
                             "INVALID_SNAPSHOT_ID")
        s.put_block(index, body, digest)
        return 201, [("x-amz-Checksum", cs), ("x-amz-Checksum-Algorithm", "SHA256"),
                     ("Content-Type", "application/json")], b"{}"

    # -- CompleteSnapshot --------------------------------------------------------------
    def complete(self, sid, header):
        s = self._snapshot(sid)
        cnt = header("x-amz-changedblockscount")
        if cnt is None:
            raise validation("x-amz-ChangedBlocksCount is required")
        count = _int(cnt, "changedBlocksCount", 0)
        cs = header("x-amz-checksum")
        alg = header("x-amz-checksum-algorithm")
        agg = header("x-amz-checksum-aggregation-method")
        if alg is not None and alg != "SHA256":
            raise validation("Value '%s' at 'checksumAlgorithm' failed to satisfy constraint: "
                             "Member must satisfy enum value set: [SHA256]" % alg)
        if agg is not None and agg != "LINEAR":
            raise validation("Value '%s' at 'checksumAggregationMethod' failed to satisfy "
                             "constraint: Member must satisfy enum value set: [LINEAR]" % agg)
        if cs is not None and (alg is None or agg is None):
            raise validation("x-amz-Checksum needs x-amz-Checksum-Algorithm and "
                             "x-amz-Checksum-Aggregation-Method")
        with s.lock:
            if s.status == "completed":
                # A retried CompleteSnapshot whose first answer was lost.
                if count != int(s.meta.get("ChangedBlocksCount", s.own_count())):
                    raise validation("The snapshot '%s' is already completed with %s changed "
                                     "blocks." % (sid, s.meta.get("ChangedBlocksCount")))
                return _json(202, {"Status": "completed"})
            if s.status != "pending":
                raise validation("The snapshot '%s' is in the '%s' state." % (sid, s.status),
                                 "INVALID_SNAPSHOT_ID")
            if count != len(s.own):
                raise validation("ChangedBlocksCount is %d but %d distinct blocks were written."
                                 % (count, len(s.own)))
            if cs is not None:
                mine = base64.b64encode(s.linear_checksum()).decode()
                if cs != mine:
                    raise validation("The aggregated checksum does not match the blocks written.",
                                     "INVALID_CONTENT_ENCODING")
            s.meta["Status"] = "completed"
            s.meta["ChangedBlocksCount"] = count
            s.meta["CompletionTime"] = time.time()
            s.sorted_own = sorted(s.own)
            s.save_meta()
        return _json(202, {"Status": "completed"})

    # -- ListSnapshotBlocks ------------------------------------------------------------
    def list_blocks(self, sid, query):
        s = self._snapshot(sid)
        self._readable(s)
        maxr = self._max_results(query)
        now = time.time()
        start = self._page_start(query, KIND_PAGE_BLOCKS, sid, now)
        expiry = math.ceil(now + self.config.token_ttl_s)
        indices = []
        nxt = None
        for i in self.store.iter_blocks(s, start):
            if len(indices) == maxr:
                nxt = i
                break
            indices.append(i)
        # Built by hand: json.dumps of 10000 dicts costs more than the rest.
        # Tokens are base64 and need no escaping.
        toks = self.tokens.make_many(KIND_BLOCK, expiry, indices, sid)
        blocks = ",".join('{"BlockIndex":%d,"BlockToken":"%s"}' % it for it in zip(indices, toks))
        tail = {"ExpiryTime": float(expiry), "VolumeSize": s.meta["VolumeSize"],
                "BlockSize": BLOCK_SIZE}
        if nxt is not None:
            tail["NextToken"] = self.tokens.make(
                KIND_PAGE_BLOCKS, now + self.config.page_token_ttl_s, nxt, sid)
        body = '{"Blocks":[%s],%s' % (blocks, json.dumps(tail, separators=(",", ":"))[1:])
        return 200, [("Content-Type", "application/json")], body.encode()

    # -- ListChangedBlocks -------------------------------------------------------------
    def list_changed(self, sid, query):
        second = self._snapshot(sid)
        self._readable(second)
        first = None
        fid = query.get("firstSnapshotId")
        if fid is not None:
            first = self._snapshot(fid)
            self._readable(first)
        maxr = self._max_results(query)
        now = time.time()
        bound = "%s|%s" % (fid or "", sid)
        start = self._page_start(query, KIND_PAGE_CHANGED, bound, now)
        expiry = math.ceil(now + self.config.token_ttl_s)
        changed = self.store.changed_filter(first, second)
        if changed is None:
            raise validation("The snapshots '%s' and '%s' are not of the same lineage."
                             % (fid, sid), "UNRELATED_SNAPSHOTS")
        # Like AWS, a page covers the next maxResults allocated blocks of either
        # snapshot and returns the changed ones among them: pages can be empty
        # while NextToken is not null.
        out_blocks = []
        nxt = None
        n = 0
        for i in self.store.iter_union(first, second, start):
            if n == maxr:
                nxt = i
                break
            n += 1
            if not changed(i):
                continue
            e = {"BlockIndex": i}
            if first is not None and self.store.lookup(first, i) is not None:
                e["FirstBlockToken"] = self._block_token(first.id, i, expiry)
            if self.store.lookup(second, i) is not None:
                e["SecondBlockToken"] = self._block_token(sid, i, expiry)
            out_blocks.append(e)
        out = {"ChangedBlocks": out_blocks, "ExpiryTime": float(expiry),
               "VolumeSize": second.meta["VolumeSize"], "BlockSize": BLOCK_SIZE}
        if nxt is not None:
            out["NextToken"] = self.tokens.make(
                KIND_PAGE_CHANGED, now + self.config.page_token_ttl_s, nxt, bound)
        return _json(200, out)

    # -- GetSnapshotBlock --------------------------------------------------------------
    def get_block(self, sid, index_s, query):
        """Returns (snapshot, index, data, digest); the HTTP layer sends it."""
        s = self._snapshot(sid)
        self._readable(s)
        index = self._block_index(s, index_s)
        tok = query.get("blockToken")
        if tok is None:
            raise validation("blockToken is required", "INVALID_BLOCK_TOKEN")
        try:
            tidx = self.tokens.parse(tok, KIND_BLOCK, sid, time.time())
        except TokenError as e:
            raise validation("The block token is not valid: %s." % e, "INVALID_BLOCK_TOKEN")
        if tidx != index:
            raise validation("The block token is not valid for block %d." % index,
                             "INVALID_BLOCK_TOKEN")
        data, digest = self.store.read_block(s, index)
        return data, digest
