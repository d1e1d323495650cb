"""Synthetic block data, generated from (seed, block index) on the fly.

Every block is the seed's 512 KiB pseudo-random base pattern with the first
32 bytes of each 4 KiB sector replaced by a stamp
    b"EBSEMU" + seed (u32 BE) + block index (u64 BE) + sector (u16 BE) + 12 bytes 0x5a
so every block (and every sector) is distinct, content is checkable from the
outside, and producing a block costs a copy plus 128 small slice writes.
`ebs-emulator synth-block --seed S --index I` prints the same bytes.
"""

import random
import struct
import threading

from . import BLOCK_SIZE

SECTOR = 4096
_STAMP = struct.Struct(">6sIQH12s")
_bases = {}
_lock = threading.Lock()


def _base(seed):
    b = _bases.get(seed)
    if b is None:
        rng = random.Random(seed)
        if hasattr(rng, "randbytes"):
            b = rng.randbytes(BLOCK_SIZE)
        else:                                   # Python < 3.9 fallback
            b = rng.getrandbits(BLOCK_SIZE * 8).to_bytes(BLOCK_SIZE, "little")
        with _lock:
            _bases[seed] = b
    return b


def block_into(seed, index, buf):
    """Writes block (seed, index) into buf, a writable buffer of BLOCK_SIZE: no allocation
    per request (fresh 512 KiB buffers cost page faults under many threads)."""
    buf[:] = _base(seed)
    pack_into = _STAMP.pack_into
    seed32 = seed & 0xFFFFFFFF
    pad = b"\x5a" * 12
    for s in range(BLOCK_SIZE // SECTOR):
        pack_into(buf, s * SECTOR, b"EBSEMU", seed32, index, s, pad)
    return buf


def block_data(seed, index):
    return bytes(block_into(seed, index, bytearray(BLOCK_SIZE)))
