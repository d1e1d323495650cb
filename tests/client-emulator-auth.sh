#!/usr/bin/env bash
# client-emulator-auth.sh - credentials from each source sign real requests
# that the EBS emulator accepts: an upload (Start/Put/Complete, so
# UNSIGNED-PAYLOAD with a session token) with credential_process keys, a
# read-back with IMDSv2 keys, a listing with container keys; a wrong session
# token is refused at once (403, no retry storm); and with all debug output
# on, no secret appears in anything ebs_tool printed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

tool="$top_builddir/src/ebs_tool"
[ -x "$tool" ] || fail "$tool is not built"

PROC=AKIDPROCFIXED:procSECRETdoNotLeak0001:procSESSIONdoNotLeak0001
META=AKIDMETAFIXED:metaSECRETdoNotLeak0002:metaSESSIONdoNotLeak0002
start_emulator --credentials "$PROC" --credentials "$META"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED
all="$EMU_TMP/all-output"
: >"$all"

srvdir="$EMU_TMP/metadata"
mkdir "$srvdir"
"$PYTHON3" "$top_srcdir/tests/metadata_server.py" "$srvdir" --fixed "$META" \
  --container-token containerAUTHdoNotLeak >>"$all" 2>&1 &
srv=$!
on_exit "kill $srv 2>/dev/null; wait $srv 2>/dev/null"
for _ in $(seq 300); do [ -s "$srvdir/port" ] && break; sleep 0.1; done
[ -s "$srvdir/port" ] || fail "metadata server did not start"
meta="http://127.0.0.1:$(cat "$srvdir/port")"

# run ARGS...: ebs_tool with every debug switch on; output in $EMU_TMP/out
# and $EMU_TMP/err, both kept for the leak check.
run() {
  timeout 120 "$tool" --debug "$@" >"$EMU_TMP/out" 2>"$EMU_TMP/err"
  local rc=$?
  cat "$EMU_TMP/out" "$EMU_TMP/err" >>"$all"
  return $rc
}

# credential_process keys: write a snapshot.
cat >"$EMU_TMP/proc.sh" <<EOF
#!/bin/sh
exp=\$(date -u -d "@\$(( \$(date +%s) + 3600 ))" +%Y-%m-%dT%H:%M:%SZ)
IFS=: read akid secret token <<END
\${PROC_CREDS:-$PROC}
END
printf '{"Version": 1, "AccessKeyId": "%s", "SecretAccessKey": "%s", "SessionToken": "%s", "Expiration": "%s"}\n' \
  "\$akid" "\$secret" "\$token" "\$exp"
EOF
chmod +x "$EMU_TMP/proc.sh"
printf '[default]\ncredential_process = %s\n' "$EMU_TMP/proc.sh" >"$AWS_CONFIG_FILE"
export AWS_EC2_METADATA_DISABLED=true
head -c 1572864 /dev/urandom >"$EMU_TMP/image"
run upload "$EMU_TMP/image" --size 1 || fail "upload with credential_process keys: $(cat "$EMU_TMP/err")"
read -r snap status <"$EMU_TMP/out"
[[ $snap =~ ^snap- ]] || fail "upload printed '$(cat "$EMU_TMP/out")'"
echo "ok   upload with credential_process keys (session token, UNSIGNED-PAYLOAD): $snap $status"

# A session token the service does not know: refused at once, not retried.
lists_before=$(emu_counter ListSnapshotBlocks)
if PROC_CREDS=AKIDPROCFIXED:procSECRETdoNotLeak0001:wrongSESSIONdoNotLeak run list "$snap"; then
  fail "a wrong session token was accepted"
fi
n=$(( $(emu_counter ListSnapshotBlocks) - lists_before ))
[ "$n" -le 1 ] || fail "a 403 was retried ($n requests)"
grep -qi "UnrecognizedClient\|denied\|403" "$EMU_TMP/err" || fail "403 not reported: $(cat "$EMU_TMP/err")"
echo "ok   wrong session token refused once: $(grep -m1 'ListSnapshotBlocks' "$EMU_TMP/err" | cut -c1-140)"

# IMDSv2 keys: read it back (many GetSnapshotBlock requests, one credential fetch).
: >"$AWS_CONFIG_FILE"
unset AWS_EC2_METADATA_DISABLED
export AWS_EC2_METADATA_SERVICE_ENDPOINT="$meta"
run read "$snap" "$EMU_TMP/readback" || fail "read with IMDS keys: $(cat "$EMU_TMP/err")"
cmp "$EMU_TMP/image" <(head -c 1572864 "$EMU_TMP/readback") || fail "read-back differs"
[ "$(cat "$srvdir/count.imds_creds")" = 1 ] || fail "IMDS asked $(cat "$srvdir/count.imds_creds") times for one run"
echo "ok   read back with IMDSv2 keys"

# Container keys: list it.
export AWS_CONTAINER_CREDENTIALS_FULL_URI="$meta/container/creds"
export AWS_CONTAINER_AUTHORIZATION_TOKEN=containerAUTHdoNotLeak
run list "$snap" --all || fail "list with container keys: $(cat "$EMU_TMP/err")"
grep -q '^blocks 3$' "$EMU_TMP/out" || fail "list: $(cat "$EMU_TMP/out")"
[ "$(cat "$srvdir/count.container_creds")" = 1 ] || fail "container endpoint not used"
echo "ok   list with container keys"

[ -s "$all" ] || fail "no output captured"
if grep -n doNotLeak "$all"; then
  fail "a secret appeared in ebs_tool's output above"
fi
echo "ok   no secret in $(wc -l <"$all") lines of ebs_tool output with --debug"
exit 0
