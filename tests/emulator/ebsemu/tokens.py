"""Opaque block and page tokens.

A token is standard base64 (so it contains '+', '/' and '=' and tests the
client's query encoding) of: kind byte, expiry (u32 epoch seconds), block
index (u64), the snapshot id(s) it is bound to, and an 8-byte keyed BLAKE2b
MAC with a per-data-dir secret, so tokens survive server restarts and any
change to a token (or using it for another snapshot or block) is detected.
"""

import base64
import binascii
import hashlib
import hmac
import os
import struct

KIND_BLOCK = 1
KIND_PAGE_BLOCKS = 2
KIND_PAGE_CHANGED = 3
_HEAD = struct.Struct(">BIQ")
_MAC_LEN = 8


class TokenError(Exception):
    pass


def load_secret(data_dir):
    path = os.path.join(data_dir, "token-secret")
    try:
        with open(path, "rb") as f:
            s = f.read()
        if len(s) == 32:
            return s
    except FileNotFoundError:
        pass
    s = os.urandom(32)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(s)
    try:
        os.link(tmp, path)          # first writer wins; everyone then reads it
    except FileExistsError:
        pass
    os.unlink(tmp)
    with open(path, "rb") as f:
        return f.read()


class Tokens:
    def __init__(self, secret):
        self.secret = secret
        self._keyed = hashlib.blake2b(digest_size=_MAC_LEN, key=secret)

    def _mac(self, data):
        m = self._keyed.copy()
        m.update(data)
        return m.digest()

    def make(self, kind, expiry, index, bound):
        """bound: string naming what the token belongs to (snapshot ids)."""
        data = _HEAD.pack(kind, int(expiry), index) + bound.encode()
        return base64.b64encode(data + self._mac(data)).decode()

    def make_many(self, kind, expiry, indices, bound):
        """make() for a whole page: the same tokens, with the lookups hoisted."""
        pack = _HEAD.pack
        copy = self._keyed.copy
        b64 = base64.b64encode
        bound = bound.encode()
        expiry = int(expiry)
        out = []
        for i in indices:
            data = pack(kind, expiry, i) + bound
            m = copy()
            m.update(data)
            out.append(b64(data + m.digest()).decode())
        return out

    def parse(self, token, kind, bound, now):
        """Returns the index stored in a valid token, else raises TokenError."""
        if not token or len(token) > 256:
            raise TokenError("malformed token")
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            raise TokenError("malformed token")
        if len(raw) < _HEAD.size + _MAC_LEN:
            raise TokenError("malformed token")
        data, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(data)):
            raise TokenError("token is not valid")
        k, expiry, index = _HEAD.unpack_from(data)
        if k != kind or data[_HEAD.size:].decode(errors="replace") != bound:
            raise TokenError("token does not belong to this request")
        if now > expiry:
            raise TokenError("token has expired")
        return index
