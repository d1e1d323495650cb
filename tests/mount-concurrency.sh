#!/usr/bin/env bash
# mount-concurrency.sh - many threads and processes reading random offsets
# of one image at once (the multi-threaded FUSE loop, single-flight fetches,
# readahead of several streams) all get the right bytes, with a little
# latency so requests really overlap, and a cache small enough to evict.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/mount-functions.sh"
set -u

requires_ebsfs
start_emulator --quiet --latency-ms 10

SIZE=$((1024 * 1024 * 1024))
src="$EMU_TMP/source.img"
make_sparse_source "$src" "$SIZE" 5 || fail "make the source image"
snap=$(emu_import "$src") || fail "import"
mnt=$(mount_dir mnt)
start_ebsfs "$mnt" -o cache_size=8M "$snap"
img="$mnt/$snap"

reader() {                      # SEED FLAGS: 24 threads x 60 random reads
  "$PYTHON3" - "$img" "$src" "$SIZE" "$1" "$2" <<'PY'
import os, random, sys, threading
img, src, size, seed, direct = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "direct"
B = 512 * 1024
errors = []
def work(t):
    rnd = random.Random(seed * 1000 + t)
    fi = os.open(img, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    fs = os.open(src, os.O_RDONLY)
    try:
        for _ in range(60):
            # Mostly near data (the first blocks, the middle, the end), some anywhere.
            base = rnd.choice([0, 100 * B, size // 2 - B, size - 2 * B, rnd.randrange(0, size)])
            off = min(size - 1, base + rnd.randrange(0, 2 * B))
            n = min(size - off, rnd.choice([1, 512, 4096, 65536, 300001, B, 2 * B]))
            if os.pread(fi, n, off) != os.pread(fs, n, off):
                errors.append(f"thread {t}: {off}+{n} differs")
    finally:
        os.close(fi); os.close(fs)
threads = [threading.Thread(target=work, args=(t,)) for t in range(24)]
for t in threads: t.start()
for t in threads: t.join()
for e in errors[:10]: print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

pids=()
reader 1 direct & pids+=($!)
reader 2 direct & pids+=($!)
reader 3 buffered & pids+=($!)
# A sequential stream at the same time (readahead while random readers run).
( dd if="$img" bs=1M iflag=direct status=none | cmp - "$src" ) & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || fail "a reader got wrong bytes or failed"; done
stop_ebsfs "$mnt"
