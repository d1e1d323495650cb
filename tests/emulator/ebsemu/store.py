"""Snapshots on disk, and the lineage arithmetic over them.

Layout under DATA_DIR/snapshots/<snapshot-id>/:
  meta.json   the snapshot's metadata; always replaced by an atomic rename,
              and written last when a snapshot is created, so a reader (the
              server, or the CLI on the same directory) never sees half of it
  blocks.dat  512 KiB block slots, appended in arrival order (stored snapshots)
  index.log   48-byte records (block index u64, slot u64, SHA-256 digest),
              appended after the slot's data is written; the last record for
              an index wins.  A torn trailing record is ignored on load.
Synthetic snapshots have only meta.json: their blocks come from synth.py.

A snapshot's own blocks are the ones written to it; its full content is its
own blocks over its parent's full content (ParentSnapshotId lineage).
Completed snapshots are immutable, so readers need no lock for them.
"""

import bisect
import errno
import hashlib
import heapq
import json
import mmap
import os
import struct
import threading
import time

from . import BLOCK_SIZE, BLOCKS_PER_GIB, synth

OWNER_ID = "111122223333"
_REC = struct.Struct(">QQ32s")
ZERO_BLOCK = bytes(BLOCK_SIZE)
ZERO_DIGEST = hashlib.sha256(ZERO_BLOCK).digest()


def _pwrite_all(fd, data, off):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n


def new_snapshot_id():
    return "snap-" + os.urandom(9).hex()[:17]


def write_json_atomic(path, obj):
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Snapshot:
    def __init__(self, store, meta):
        self.store = store
        self.meta = meta
        self.id = meta["SnapshotId"]
        self.dir = store.snap_dir(self.id)
        self.lock = threading.Lock()
        self.own = {}               # index -> (slot, digest)
        self.sorted_own = None      # sorted indices, once completed
        self.next_slot = 0
        self.fd = -1
        self.dfd = -1               # blocks.dat again, O_DIRECT, for PUTs (open_files)
        self.ilog_fd = -1
        syn = meta.get("Synthetic")
        self.synthetic = (int(syn["Seed"]), int(syn["Every"])) if syn else None
        self.nblocks = int(meta["VolumeSize"]) * BLOCKS_PER_GIB
        self.last_activity = float(meta.get("LastActivity", meta["StartTime"]))

    @property
    def status(self):
        return self.meta["Status"]

    # -- loading and storing ---------------------------------------------------
    def open_files(self):
        if self.synthetic:
            return
        dpath = os.path.join(self.dir, "blocks.dat")
        self.fd = os.open(dpath, os.O_RDWR | os.O_CREAT, 0o644)
        # PUTs (to a pending snapshot only) write around the page cache where
        # the file system allows it.
        # Buffered, 128 threads appending to one file spent 1.4 ms of kernel
        # time per 512 KiB block here (copying into new page-cache pages,
        # spinning on the inode lock), 0.2 ms with O_DIRECT, and that kernel
        # time came out of the 2 cores the client under test shares: the
        # emulator absorbed 290-590 PUT/s.  Reads stay buffered (self.fd);
        # the kernel keeps the two coherent.
        if self.status == "pending" and hasattr(os, "O_DIRECT"):
            try:
                self.dfd = os.open(dpath, os.O_WRONLY | os.O_DIRECT)
            except OSError:
                self.dfd = -1       # no O_DIRECT here (some tmpfs): buffered only
        ipath = os.path.join(self.dir, "index.log")
        self.ilog_fd = os.open(ipath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with open(ipath, "rb") as f:
            data = f.read()
        n = len(data) // _REC.size
        for i in range(n):
            idx, slot, digest = _REC.unpack_from(data, i * _REC.size)
            self.own[idx] = (slot, digest)
            self.next_slot = max(self.next_slot, slot + 1)
        st = os.fstat(self.ilog_fd)
        if n:
            self.last_activity = max(self.last_activity, st.st_mtime)
        if self.status == "completed":
            self.sorted_own = sorted(self.own)

    def close(self):
        for fd in (self.fd, self.dfd, self.ilog_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dfd = self.ilog_fd = -1

    def save_meta(self):
        self.meta["LastActivity"] = self.last_activity
        write_json_atomic(os.path.join(self.dir, "meta.json"), self.meta)

    def put_block(self, index, data, digest):
        with self.lock:
            slot = self.next_slot
            self.next_slot += 1
        off = slot * BLOCK_SIZE
        if self.dfd >= 0:
            try:
                _pwrite_all(self.dfd, data, off)
            except OSError as e:
                # An unaligned buffer (a chunked body is joined in a fresh
                # bytes object): this block goes through the page cache.
                if e.errno != errno.EINVAL:
                    raise
                _pwrite_all(self.fd, data, off)
        else:
            _pwrite_all(self.fd, data, off)
        with self.lock:
            os.write(self.ilog_fd, _REC.pack(index, slot, digest))
            self.own[index] = (slot, digest)
            self.last_activity = time.time()

    # -- own blocks ----------------------------------------------------------------
    def has_own(self, index):
        if self.synthetic:
            return index < self.nblocks and index % self.synthetic[1] == 0
        return index in self.own

    def own_data(self, index):
        """(data, raw digest) of a block this snapshot holds itself.

        data is the calling thread's block buffer: valid until the thread's
        next read_block, or until its connection ends (release_thread_buffer)."""
        buf = self.store.thread_buffer()
        if self.synthetic:
            return self.store.synth_block(self.synthetic[0], index, buf)
        slot, digest = self.own[index]
        n = os.preadv(self.fd, [buf], slot * BLOCK_SIZE)
        if n < BLOCK_SIZE:
            buf[n:] = bytes(BLOCK_SIZE - n)
        return buf, digest

    def iter_own(self, start):
        """Own block indices >= start, ascending; arithmetic for synthetic ones."""
        if self.synthetic:
            every = self.synthetic[1]
            first = -(-start // every) * every
            return iter(range(first, self.nblocks, every))
        keys = self.sorted_own if self.sorted_own is not None else sorted(self.own)
        pos = bisect.bisect_left(keys, start)
        return (keys[i] for i in range(pos, len(keys)))

    def own_count(self):
        if self.synthetic:
            return -(-self.nblocks // self.synthetic[1])
        return len(self.own)

    def linear_checksum(self):
        h = hashlib.sha256()
        for i in sorted(self.own):
            h.update(self.own[i][1])
        return h.digest()

    def describe(self):
        m = self.meta
        return {k: m[k] for k in ("SnapshotId", "Status", "StartTime", "VolumeSize",
                                  "ParentSnapshotId", "Description", "Synthetic",
                                  "ImportedBytes", "Encrypted", "KmsKeyArn", "Tags", "Timeout")
                if m.get(k) is not None} | {"OwnBlocks": self.own_count()}

    def own_indices(self):
        """Sorted indices of the blocks this snapshot holds itself (admin only;
        None for a synthetic snapshot, whose blocks are arithmetic)."""
        if self.synthetic:
            return None
        with self.lock:
            return sorted(self.own)


class Store:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        os.makedirs(os.path.join(data_dir, "snapshots"), exist_ok=True)
        self.lock = threading.Lock()
        self.snapshots = {}
        self.client_tokens = {}     # ClientToken -> snapshot id
        self._digests = {}          # (seed, index) -> digest of synthetic blocks
        self._tls = threading.local()
        self._spare = []            # block buffers of finished connections

    # Block buffers are lent to a connection's thread for as long as it serves
    # the connection, then go back to a shared list: a new connection takes a
    # buffer whose memory is already resident.  Allocating it afresh cost
    # 2-28 ms per new connection in a burst here (zeroing and first-touching
    # 512 KiB under the GIL), more than the 50 ms latency's work allowance.
    # list.pop/append are atomic under the GIL: no lock.
    MAX_SPARE = 256

    def take_buffer(self):
        """A BLOCK_SIZE buffer, page-aligned (an anonymous mmap): a PUT's body
        read into it can be written with O_DIRECT."""
        try:
            return self._spare.pop()
        except IndexError:
            return mmap.mmap(-1, BLOCK_SIZE)

    def give_buffer(self, buf):
        if buf is not None and len(buf) == BLOCK_SIZE and len(self._spare) < self.MAX_SPARE:
            self._spare.append(buf)

    def thread_buffer(self):
        """A 512 KiB buffer for the calling thread, reused for every block until
        release_thread_buffer."""
        buf = getattr(self._tls, "buf", None)
        if buf is None:
            buf = self._tls.buf = self.take_buffer()
        return buf

    def release_thread_buffer(self):
        self.give_buffer(getattr(self._tls, "buf", None))
        self._tls.buf = None

    def snap_dir(self, sid):
        return os.path.join(self.data_dir, "snapshots", sid)

    def _load(self, sid):
        try:
            with open(os.path.join(self.snap_dir(sid), "meta.json")) as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        s = Snapshot(self, meta)
        s.open_files()
        return s

    def get(self, sid):
        """The snapshot, loading it from disk if another process created it."""
        s = self.snapshots.get(sid)
        if s is not None:
            return s
        if not sid.startswith("snap-") or "/" in sid:
            return None
        with self.lock:
            s = self.snapshots.get(sid)
            if s is None:
                s = self._load(sid)
                if s is not None:
                    self.snapshots[sid] = s
                    tok = s.meta.get("ClientToken")
                    if tok:
                        self.client_tokens.setdefault(tok, sid)
        return s

    def scan(self):
        for sid in sorted(os.listdir(os.path.join(self.data_dir, "snapshots"))):
            self.get(sid)
        return sorted(self.snapshots.values(), key=lambda s: (s.meta["StartTime"], s.id))

    def create(self, meta):
        sid = meta["SnapshotId"]
        os.makedirs(self.snap_dir(sid))
        s = Snapshot(self, meta)
        s.open_files()
        s.save_meta()
        with self.lock:
            self.snapshots[sid] = s
            tok = meta.get("ClientToken")
            if tok:
                self.client_tokens[tok] = sid
        return s

    # -- synthetic blocks -----------------------------------------------------------
    def synth_block(self, seed, index, buf):
        data = synth.block_into(seed, index, buf)
        key = (seed, index)
        d = self._digests.get(key)
        if d is None:
            d = hashlib.sha256(data).digest()
            if len(self._digests) > 262144:
                self._digests.clear()
            self._digests[key] = d
        return data, d

    # -- lineage ----------------------------------------------------------------------
    def chain(self, snap):
        """[snap, parent, grandparent, ...]"""
        out = [snap]
        seen = {snap.id}
        while out[-1].meta.get("ParentSnapshotId"):
            p = self.get(out[-1].meta["ParentSnapshotId"])
            if p is None or p.id in seen:
                break
            seen.add(p.id)
            out.append(p)
        return out

    def lookup(self, snap, index):
        """The snapshot in snap's lineage that holds block index, or None."""
        if index >= snap.nblocks:
            return None
        for s in self.chain(snap):
            if s.has_own(index):
                return s
        return None

    def read_block(self, snap, index):
        """(data, raw digest) of the block as snap sees it; zeros if unallocated."""
        holder = self.lookup(snap, index)
        if holder is None:
            return ZERO_BLOCK, ZERO_DIGEST
        return holder.own_data(index)

    @staticmethod
    def _merge(snaps, start, limit):
        its = [s.iter_own(start) for s in snaps]
        merged = its[0] if len(its) == 1 else heapq.merge(*its)
        last = -1
        for i in merged:
            if i >= limit:
                return
            if i != last:
                last = i
                yield i

    def iter_blocks(self, snap, start):
        """All allocated block indices of snap's full content, >= start."""
        return self._merge(self.chain(snap), start, snap.nblocks)

    def iter_union(self, first, second, start):
        """Allocated block indices of first's and second's content, >= start."""
        if first is None:
            return self.iter_blocks(second, start)
        snaps = {x.id: x for x in self.chain(first) + self.chain(second)}
        return self._merge(list(snaps.values()), start, max(first.nblocks, second.nblocks))

    def changed_filter(self, first, second):
        """A predicate index -> changed between first (or nothing) and second.

        Returns None when the two are not of one lineage."""
        if first is None:
            return lambda i: self.lookup(second, i) is not None
        c1 = self.chain(first)
        c2 = self.chain(second)
        ids1 = [s.id for s in c1]
        ids2 = [s.id for s in c2]
        common = next((x for x in ids2 if x in ids1), None)
        if common is None:
            return None
        snaps = c1[:ids1.index(common)] + c2[:ids2.index(common)]
        limit1, limit2 = first.nblocks, second.nblocks

        def changed(i):
            if (i < limit1) != (i < limit2):
                return True
            return any(s.has_own(i) for s in snaps)
        return changed
