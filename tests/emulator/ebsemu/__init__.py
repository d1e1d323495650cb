"""ebsemu - a local, faithful stand-in for the Amazon EBS direct APIs.

Modules: store (snapshots on disk), synth (generated block data), tokens
(opaque block/page tokens), sigv4 (request signature verification), api (the
six operations), httpd (the HTTP and admin servers), cli (the command line).
Python 3.9+ standard library only.
"""

BLOCK_SIZE = 524288
BLOCKS_PER_GIB = (1 << 30) // BLOCK_SIZE
MAX_VOLUME_GIB = 65536
