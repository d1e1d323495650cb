#!/usr/bin/env bash
# client-sigv4-botocore.sh - ebsfs's SigV4 signatures equal botocore's, byte for
# byte, for all six EBS operations with and without a session token
# (tests/client-sigv4-botocore.py does the work).  Uses the python3 first on
# PATH, which must import botocore; skips where it cannot.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

dump="$top_builddir/src/sigv4_dump"
[ -x "$dump" ] || fail "$dump is not built (make check builds it)"
requires python3
python3 -c 'import botocore' 2>/dev/null ||
  skip "botocore cannot be imported by $(command -v python3); install it (pip install botocore) to run this cross-check"

out=$(python3 "$top_srcdir/tests/client-sigv4-botocore.py" "$dump" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || fail "signatures differ from botocore's (see above)"
# The secret key is on sigv4_dump's stdin only; it must not come back.
if printf '%s' "$out" | grep -q 'ebsfs/Test+Secret'; then
  fail "the secret key appeared in the output"
fi
exit 0
