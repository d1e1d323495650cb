#!/usr/bin/env bash
# emulator-awscli.sh - fidelity: the real AWS CLI (botocore-signed requests)
# runs the whole write-then-read cycle against the emulator: start, put,
# complete (count + LINEAR checksum), list with pagination, get and compare,
# an incremental child and list-changed-blocks.  Then the emulator must
# reject what AWS rejects: a replayed request tampered in path, query or a
# signed header, a wrong secret, an unknown key, and invalid parameters.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

requires aws timeout cmp
start_emulator
T=$EMU_TMP
AWS() { timeout 60 aws --endpoint-url "$EMU_URL" --region us-east-1 --output text ebs "$@"; }
b64sha() { "$PYTHON3" -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1],"rb").read()).digest()).decode())' "$1"; }
linear() {  # FILE... in ascending block order -> LINEAR aggregated checksum
  "$PYTHON3" -c 'import base64,hashlib,sys
h=hashlib.sha256()
for f in sys.argv[1:]: h.update(hashlib.sha256(open(f,"rb").read()).digest())
print(base64.b64encode(h.digest()).decode())' "$@"
}
# expect_error CODE CMD...: CMD must fail and name CODE in its error output.
expect_error() {
  local code=$1 err; shift
  err=$(mktemp "$T/err.XXXXXX")
  if "$@" >/dev/null 2>"$err"; then fail "'$*' succeeded, expected $code"; fi
  grep -q "($code)" "$err" || { cat "$err" >&2; fail "'$*' did not fail with $code"; }
}
# Independent checks run in the background (each aws start costs ~1 s of CPU);
# settle waits for them and fails if any did.
pids=()
bg() { "$@" & pids+=($!); }
settle() {
  local p
  for p in "${pids[@]}"; do wait "$p" || fail "a background check failed"; done
  pids=()
}

for i in 0 1 2 3; do
  head -c 524288 /dev/urandom >"$T/blk$i" || fail "making test data"
done

# ---- write a snapshot ----------------------------------------------------------
parent=$(AWS start-snapshot --volume-size 1 --description fidelity --query SnapshotId) ||
  fail "start-snapshot"
[[ $parent =~ ^snap-[0-9a-f]+$ ]] || fail "bad snapshot id '$parent'"
expect_error ValidationException AWS list-snapshot-blocks --snapshot-id "$parent"   # pending: unreadable
for i in 0 1 2; do
  idx=$(( i * 100 ))                    # blocks 0, 100, 200
  AWS put-snapshot-block --snapshot-id "$parent" --block-index $idx \
    --block-data "$T/blk$i" --data-length 524288 \
    --checksum "$(b64sha "$T/blk$i")" --checksum-algorithm SHA256 >/dev/null ||
    fail "put-snapshot-block $idx"
done
# A block whose checksum does not match its data is refused.
expect_error ValidationException AWS put-snapshot-block --snapshot-id "$parent" \
  --block-index 5 --block-data "$T/blk3" --data-length 524288 \
  --checksum "$(b64sha "$T/blk0")" --checksum-algorithm SHA256
# A wrong ChangedBlocksCount is refused; the right one with LINEAR completes.
expect_error ValidationException AWS complete-snapshot --snapshot-id "$parent" --changed-blocks-count 4
st=$(AWS complete-snapshot --snapshot-id "$parent" --changed-blocks-count 3 \
  --checksum "$(linear "$T/blk0" "$T/blk1" "$T/blk2")" \
  --checksum-algorithm SHA256 --checksum-aggregation-method LINEAR --query Status) ||
  fail "complete-snapshot"
[ "$st" = completed ] || fail "complete-snapshot said '$st'"

# ---- read it back ------------------------------------------------------------------
AWS list-snapshot-blocks --snapshot-id "$parent" --output json >"$T/list.json" || fail "list-snapshot-blocks"
"$PYTHON3" - "$T/list.json" >"$T/blocks" <<'PY' || fail "bad list-snapshot-blocks answer"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["BlockSize"] == 524288 and d["VolumeSize"] == 1, d
assert [b["BlockIndex"] for b in d["Blocks"]] == [0, 100, 200], d
assert "NextToken" not in d and d["ExpiryTime"], d
for b in d["Blocks"]:
    print(b["BlockIndex"], b["BlockToken"])
PY
i=0
while read -r idx tok; do
  AWS get-snapshot-block --snapshot-id "$parent" --block-index "$idx" --block-token "$tok" \
    "$T/got$i" >"$T/get.txt" || fail "get-snapshot-block $idx"
  cmp "$T/blk$i" "$T/got$i" || fail "block $idx read back differs"
  grep -q "$(b64sha "$T/blk$i")" "$T/get.txt" || fail "get-snapshot-block checksum header"
  i=$((i + 1))
done <"$T/blocks"
[ "$i" -eq 3 ] || fail "read $i blocks, expected 3"
# A token of one block does not open another.
tok0=$(awk 'NR==1 {print $2}' "$T/blocks")
bg expect_error ValidationException AWS get-snapshot-block --snapshot-id "$parent" --block-index 100 \
  --block-token "$tok0" "$T/junk"

# ---- an incremental child, and what changed --------------------------------------
child=$(AWS start-snapshot --volume-size 1 --parent-snapshot-id "$parent" --query SnapshotId) ||
  fail "start-snapshot child"
for spec in "100 3" "300 0"; do
  set -- $spec
  AWS put-snapshot-block --snapshot-id "$child" --block-index "$1" --block-data "$T/blk$2" \
    --data-length 524288 --checksum "$(b64sha "$T/blk$2")" --checksum-algorithm SHA256 >/dev/null ||
    fail "put-snapshot-block child $1"
done
AWS complete-snapshot --snapshot-id "$child" --changed-blocks-count 2 >/dev/null || fail "complete child"
AWS list-snapshot-blocks --snapshot-id "$child" --query 'Blocks[].BlockIndex' >"$T/cl" || fail "list child"
[ "$(tr -s '\t ' '\n\n' <"$T/cl" | xargs)" = "0 100 200 300" ] || fail "child lists $(cat "$T/cl")"
AWS list-changed-blocks --first-snapshot-id "$parent" --second-snapshot-id "$child" \
  --output json >"$T/changed.json" || fail "list-changed-blocks"
tok=$("$PYTHON3" - "$T/changed.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["ChangedBlocks"]
assert [b["BlockIndex"] for b in c] == [100, 300], c
assert "FirstBlockToken" in c[0] and "SecondBlockToken" in c[0], c
assert "FirstBlockToken" not in c[1] and "SecondBlockToken" in c[1], c
print(c[0]["SecondBlockToken"])
PY
) || fail "bad list-changed-blocks answer"
AWS get-snapshot-block --snapshot-id "$child" --block-index 100 --block-token "$tok" "$T/got-c" \
  >/dev/null || fail "get child block"
cmp "$T/blk3" "$T/got-c" || fail "child block 100 is not the one written to the child"
other=$(emu_synth --size-gib 1 --every 1000)
bg expect_error ValidationException AWS list-changed-blocks --first-snapshot-id "$other" \
  --second-snapshot-id "$child"                   # UNRELATED_SNAPSHOTS

# ---- pagination: 130 blocks, pages of 100 ------------------------------------------
"$PYTHON3" - "$T/img" <<'PY' || fail "making sparse image"
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(130):
        f.seek(i * 2 * 524288 + 17)
        f.write(b"block %d" % i)
    f.truncate(300 * 524288)
PY
big=$(emu_import "$T/img") || fail "emu import"
AWS list-snapshot-blocks --snapshot-id "$big" --max-results 100 --output json >"$T/p1.json" ||
  fail "list page 1"
next=$("$PYTHON3" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["Blocks"])==100, len(d["Blocks"]); print(d["NextToken"])' "$T/p1.json") ||
  fail "page 1 is not 100 blocks + NextToken"
AWS list-snapshot-blocks --snapshot-id "$big" --max-results 100 --next-token "$next" \
  --output json >"$T/p2.json" || fail "list page 2"
"$PYTHON3" -c 'import json,sys
a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
idx=[x["BlockIndex"] for x in a["Blocks"]+b["Blocks"]]
assert idx==[2*i for i in range(130)], idx
assert "NextToken" not in b' "$T/p1.json" "$T/p2.json" || fail "pages do not add up to the 130 blocks"
bg expect_error ValidationException AWS list-snapshot-blocks --snapshot-id "$big" --max-results 20000
bg expect_error ValidationException AWS list-snapshot-blocks --snapshot-id "$big" --next-token "AAAA$next"
bg expect_error ResourceNotFoundException AWS list-snapshot-blocks --snapshot-id snap-0123456789abcdef0

# ---- signatures ----------------------------------------------------------------------
AWS list-snapshot-blocks --snapshot-id "$big" --max-results 100 --debug >/dev/null 2>"$T/debug" ||
  fail "signed request for the replay"
replay() { "$PYTHON3" "$top_srcdir/tests/emulator/replay.py" "$T/debug" "$@"; }
r=$(replay) && [ "$r" = "200 -" ] || fail "untouched replay was not accepted: $r"
r=$(replay --query-sub maxResults=100 maxResults=101)
[ "$r" = "403 InvalidSignatureException" ] || fail "tampered query accepted: $r"
r=$(replay --path-sub "$big" "$parent")
[ "$r" = "403 InvalidSignatureException" ] || fail "tampered path accepted: $r"
d=$(grep -o "'X-Amz-Date': b'[0-9TZ]*'" "$T/debug" | tail -1 | grep -o '[0-9]\{8\}T[0-9]\{6\}Z')
d2=$("$PYTHON3" -c 'import datetime,sys; t=datetime.datetime.strptime(sys.argv[1],"%Y%m%dT%H%M%SZ")+datetime.timedelta(seconds=1); print(t.strftime("%Y%m%dT%H%M%SZ"))' "$d")
r=$(replay --header X-Amz-Date "$d2")
[ "$r" = "403 InvalidSignatureException" ] || fail "tampered signed header accepted: $r"
r=$(replay --drop-header Authorization)
[ "$r" = "403 MissingAuthenticationTokenException" ] || fail "unsigned request accepted: $r"
bg expect_error InvalidSignatureException timeout 60 env AWS_SECRET_ACCESS_KEY=wrongsecret \
  aws --endpoint-url "$EMU_URL" --region us-east-1 ebs list-snapshot-blocks --snapshot-id "$big"
bg expect_error UnrecognizedClientException timeout 60 env AWS_ACCESS_KEY_ID=AKIDUNKNOWN \
  aws --endpoint-url "$EMU_URL" --region us-east-1 ebs list-snapshot-blocks --snapshot-id "$big"
bg expect_error InvalidSignatureException \
  timeout 60 aws --endpoint-url "$EMU_URL" --region eu-west-1 ebs list-snapshot-blocks --snapshot-id "$big"
settle

# The emulator saw all of it, and counted it.
[ "$(emu_counter PutSnapshotBlock)" -ge 6 ] || fail "PutSnapshotBlock counter"
[ "$(emu_counter GetSnapshotBlock)" -ge 5 ] || fail "GetSnapshotBlock counter"
echo "PASS: aws CLI fidelity cycle"
