"""Command line: serve, import, export, synth, list, synth-block.

import/export/synth/list work directly on the data directory, also while a
server runs on it: new snapshots are written meta.json-last with an atomic
rename, and the server loads a snapshot it does not know on first use.
"""

import argparse
import hashlib
import os
import signal
import sys
import threading
import time

from . import BLOCK_SIZE, BLOCKS_PER_GIB, MAX_VOLUME_GIB
from .store import OWNER_ID, ZERO_BLOCK, Store, new_snapshot_id, _REC
from .tokens import Tokens, load_secret

DEFAULT_CREDENTIALS = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
GIB = 1 << 30


def _write_atomic(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_serve(a):
    from . import httpd
    creds = {}
    for c in a.credentials or [DEFAULT_CREDENTIALS]:
        parts = c.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            sys.exit("ebs-emulator: --credentials wants AKID:SECRET[:TOKEN]")
        creds[parts[0]] = (parts[1], parts[2] if len(parts) == 3 and parts[2] else None)
    store = Store(a.data_dir)
    tokens = Tokens(load_secret(a.data_dir))
    cfg = httpd.Config(latency_ms=a.latency_ms, rate_limit=a.rate_limit,
                       token_ttl_s=a.token_ttl_s)
    if a.timeout_unit_s is not None:
        cfg.update({"timeout_unit_s": a.timeout_unit_s})
    ctx = httpd.Context(store, tokens, cfg, creds, a.region, a.quiet)
    store.scan()                        # rebuild the ClientToken index
    ebs, admin = httpd.make_servers(ctx, a.host, a.port, a.admin_port)
    stop = threading.Event()
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    threading.Thread(target=httpd.reaper, args=(ctx, stop), daemon=True).start()
    if a.port_file:
        _write_atomic(a.port_file, "%d\n" % ebs.server_address[1])
    if a.admin_port_file:
        _write_atomic(a.admin_port_file, "%d\n" % admin.server_address[1])
    if not a.quiet:
        sys.stderr.write("ebs-emulator: serving EBS on http://%s:%d, admin on http://%s:%d, "
                         "data in %s\n" % (a.host, ebs.server_address[1], a.host,
                                           admin.server_address[1], a.data_dir))

    def _term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        ebs.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    stop.set()
    return 0


def _new_meta(volume_gib, description, **extra):
    now = time.time()
    meta = {"SnapshotId": new_snapshot_id(), "OwnerId": OWNER_ID, "Status": "pending",
            "StartTime": now, "LastActivity": now, "VolumeSize": volume_gib,
            "BlockSize": BLOCK_SIZE, "Timeout": 60}
    if description is not None:
        meta["Description"] = description
    meta.update(extra)
    return meta


def _data_extents(fd, size):
    """(start, end) ranges holding data; the whole file if SEEK_DATA is missing."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return                      # ENXIO: only a hole is left
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def cmd_import(a):
    store = Store(a.data_dir)
    fd = os.open(a.file, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0 and os.path.exists(a.file) and not os.path.isfile(a.file):
            size = os.lseek(fd, 0, os.SEEK_END)     # block device
        vol = max(1, -(-size // GIB))
        if vol > MAX_VOLUME_GIB:
            sys.exit("ebs-emulator: %s is larger than %d GiB" % (a.file, MAX_VOLUME_GIB))
        meta = _new_meta(vol, a.description, ImportedBytes=size, ImportedFrom=os.path.abspath(a.file))
        sid = meta["SnapshotId"]
        sdir = store.snap_dir(sid)
        os.makedirs(sdir)
        nblk = 0
        with open(os.path.join(sdir, "blocks.dat"), "wb") as bf, \
                open(os.path.join(sdir, "index.log"), "wb") as ix:
            done = set()
            extents = [(0, size)] if a.keep_zero_blocks else _data_extents(fd, size)
            for start, end in extents:
                b = start // BLOCK_SIZE
                while b * BLOCK_SIZE < end:
                    if b not in done:
                        done.add(b)
                        data = os.pread(fd, BLOCK_SIZE, b * BLOCK_SIZE)
                        if len(data) < BLOCK_SIZE:
                            data += bytes(BLOCK_SIZE - len(data))
                        if a.keep_zero_blocks or data != ZERO_BLOCK:
                            bf.write(data)
                            ix.write(_REC.pack(b, nblk, hashlib.sha256(data).digest()))
                            nblk += 1
                    b += 1
            bf.flush()
            ix.flush()
            os.fsync(bf.fileno())
            os.fsync(ix.fileno())
    finally:
        os.close(fd)
    meta["Status"] = "completed"
    meta["ChangedBlocksCount"] = nblk
    meta["CompletionTime"] = time.time()
    from .store import write_json_atomic
    write_json_atomic(os.path.join(sdir, "meta.json"), meta)
    print(sid)
    return 0


def _get(store, sid):
    s = store.get(sid)
    if s is None:
        sys.exit("ebs-emulator: no snapshot %s in %s" % (sid, store.data_dir))
    return s


def cmd_export(a):
    store = Store(a.data_dir)
    s = _get(store, a.snapshot)
    if s.status != "completed":
        sys.exit("ebs-emulator: %s is %s, not completed" % (s.id, s.status))
    length = a.size if a.size is not None else int(s.meta["VolumeSize"]) * GIB
    fd = os.open(a.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, length)
        for i in store.iter_blocks(s, 0):
            off = i * BLOCK_SIZE
            if off >= length:
                break
            data, _ = store.read_block(s, i)
            os.pwrite(fd, data[:length - off], off)
    finally:
        os.close(fd)
    return 0


def cmd_synth(a):
    store = Store(a.data_dir)
    if not 1 <= a.size_gib <= MAX_VOLUME_GIB:
        sys.exit("ebs-emulator: --size-gib must be in 1..%d" % MAX_VOLUME_GIB)
    if a.every < 1:
        sys.exit("ebs-emulator: --every must be >= 1")
    nblocks = a.size_gib * BLOCKS_PER_GIB
    meta = _new_meta(a.size_gib, a.description,
                     Synthetic={"Seed": a.seed, "Every": a.every})
    meta["Status"] = "completed"
    meta["ChangedBlocksCount"] = -(-nblocks // a.every)
    meta["CompletionTime"] = time.time()
    s = store.create(meta)
    print(s.id)
    return 0


def cmd_list(a):
    store = Store(a.data_dir)
    for s in store.scan():
        m = s.meta
        kind = "synthetic(seed=%s,every=%s)" % (m["Synthetic"]["Seed"], m["Synthetic"]["Every"]) \
            if m.get("Synthetic") else "stored"
        print("%s\t%s\t%s GiB\tparent=%s\tblocks=%d\t%s\t%s" % (
            s.id, m["Status"], m["VolumeSize"], m.get("ParentSnapshotId") or "-",
            s.own_count(), kind, m.get("Description") or ""))
    return 0


def cmd_synth_block(a):
    from . import synth
    sys.stdout.buffer.write(synth.block_data(a.seed, a.index))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="ebs-emulator",
                                description="Local emulator of the Amazon EBS direct APIs.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="serve the EBS API and the admin endpoint")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--port-file")
    s.add_argument("--admin-port", type=int, default=0)
    s.add_argument("--admin-port-file")
    s.add_argument("--latency-ms", type=float, default=0.0)
    s.add_argument("--rate-limit", type=float, default=1000.0,
                   help="Get/PutSnapshotBlock requests/s per snapshot (0: unlimited)")
    s.add_argument("--credentials", action="append", metavar="AKID:SECRET[:TOKEN]")
    s.add_argument("--region", default="us-east-1")
    s.add_argument("--token-ttl-s", type=float, default=7 * 86400.0)
    s.add_argument("--timeout-unit-s", type=float,
                   help="seconds per StartSnapshot Timeout minute (default 60)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("import", help="import an image file as a completed snapshot")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--description")
    s.add_argument("--keep-zero-blocks", action="store_true")
    s.add_argument("file")
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("export", help="write a snapshot's full image to a file")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--size", type=int, help="bytes to write (default: the volume size)")
    s.add_argument("snapshot")
    s.add_argument("file")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("synth", help="create a synthetic completed snapshot")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--size-gib", type=int, required=True)
    s.add_argument("--every", type=int, default=1)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--description")
    s.set_defaults(fn=cmd_synth)

    s = sub.add_parser("list", help="list snapshots")
    s.add_argument("--data-dir", required=True)
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("synth-block", help="write synthetic block SEED/INDEX to stdout")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--index", type=int, required=True)
    s.set_defaults(fn=cmd_synth_block)

    a = p.parse_args(argv)
    if getattr(a, "data_dir", None):
        os.makedirs(a.data_dir, exist_ok=True)
    return a.fn(a)
