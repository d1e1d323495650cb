#!/usr/bin/env bash
# client-credentials.sh - the credential chain end to end, through
# src/credentials_dump: IMDSv2 and the container endpoint served on loopback
# by tests/metadata_server.py, credential_process by a script, the order of
# the sources, "no credentials anywhere", short timeouts against a stalled
# IMDS, refresh of expiring credentials, and that no secret ever shows up in
# any output, error or debug line (every secret here contains "doNotLeak").
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
set -u

dump="$top_builddir/src/credentials_dump"
[ -x "$dump" ] || fail "$dump is not built (make check builds it)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/client-credentials.XXXXXX") || fail "mktemp"
on_exit "rm -rf '$tmp'"

# A clean AWS environment: nothing from the machine running the test.
for v in $(env | sed -n 's/^\(AWS_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export HOME="$tmp/home"
mkdir -p "$HOME/.aws"
export AWS_CONFIG_FILE="$tmp/config" AWS_SHARED_CREDENTIALS_FILE="$tmp/credentials"
: >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
all="$tmp/all-output"            # every byte any run printed, for the leak check
: >"$all"

# ---- the metadata server -------------------------------------------------------
srvdir="$tmp/server"
mkdir "$srvdir"
"$PYTHON3" "$top_srcdir/tests/metadata_server.py" "$srvdir" \
  --container-token containerAUTHdoNotLeak >>"$all" 2>&1 &
srv=$!
on_exit "kill $srv 2>/dev/null; wait $srv 2>/dev/null"
for _ in $(seq 300); do [ -s "$srvdir/port" ] && break; sleep 0.1; done
[ -s "$srvdir/port" ] || fail "metadata server did not start"
base="http://127.0.0.1:$(cat "$srvdir/port")"
export AWS_EC2_METADATA_SERVICE_ENDPOINT="$base"

count() { cat "$srvdir/count.$1" 2>/dev/null || echo 0; }   # NAME -> the server's counter
server_config() { printf '%s\n' "$1" >"$srvdir/config.json"; }

# run ARGS...: credentials_dump with debug logging; stdout in $tmp/out,
# stderr in $tmp/err, both appended to $all.
run() {
  "$dump" -d "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  cat "$tmp/out" "$tmp/err" >>"$all"
  return $rc
}
field() {                         # LINE_NO KEY -> value from $tmp/out
  sed -n "${1}p" "$tmp/out" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
expect_ok() {                     # WHAT SOURCE KEY_PREFIX [ARGS...]
  local what=$1 src=$2 key=$3
  shift 3
  run "$@" || fail "$what: credentials_dump failed: $(cat "$tmp/err")"
  [ "$(field 1 source)" = "$src" ] || fail "$what: source $(field 1 source), expected $src"
  case "$(field 1 access_key_id)" in
    "$key"*) ;;
    *) fail "$what: access key $(field 1 access_key_id), expected $key*" ;;
  esac
  echo "ok   $what: $(head -1 "$tmp/out")"
}
expect_error() {                  # WHAT PATTERN [ARGS...]
  local what=$1 pat=$2
  shift 2
  if run "$@"; then fail "$what: succeeded: $(cat "$tmp/out")"; fi
  grep -q -- "$pat" "$tmp/err" || fail "$what: error lacks '$pat': $(cat "$tmp/err")"
  echo "ok   $what: $(grep -m1 error "$tmp/err")"
}

# ---- nothing anywhere ----------------------------------------------------------------
AWS_EC2_METADATA_DISABLED=true expect_error "no credentials anywhere" "no AWS credentials found"
grep -q "disabled by AWS_EC2_METADATA_DISABLED" "$tmp/err" || fail "no-credentials error does not say why"

# A metadata service that accepts connections and never answers: the short
# timeouts end the attempt in seconds, not minutes.
"$PYTHON3" -c 'import socket,sys,time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(120)' "$tmp/stallport" &
stall=$!
on_exit "kill $stall 2>/dev/null; wait $stall 2>/dev/null"
for _ in $(seq 300); do [ -s "$tmp/stallport" ] && break; sleep 0.1; done
start=$(date +%s)
AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$(cat "$tmp/stallport")" \
  expect_error "stalled IMDS" "no AWS credentials found"
took=$(( $(date +%s) - start ))
[ $took -le 10 ] || fail "stalled IMDS took ${took}s (timeouts are ~2 s)"

# ---- IMDSv2 -------------------------------------------------------------------------
expect_ok "IMDSv2" imds AKIDIMDS
[ "$(field 1 session_token)" = yes ] || fail "IMDS credentials without a token"
[ "$(field 1 expiration)" != never ] || fail "IMDS credentials without an expiry"
[ "$(count imds_token)" = 1 ] && [ "$(count imds_role)" = 1 ] && [ "$(count imds_creds)" = 1 ] ||
  fail "IMDS requests: token $(count imds_token) role $(count imds_role) creds $(count imds_creds)"
[ "$(count imds_unauthorized)" = 0 ] || fail "IMDS requests went without the session token"
# The option overrides the environment's endpoint.
AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1 expect_ok "IMDS endpoint option" imds AKIDIMDS -i "$base/"

server_config '{"imds_mode": "v1only"}'
expect_ok "IMDSv1 fallback (token PUT answered 405)" imds AKIDIMDS
AWS_EC2_METADATA_V1_DISABLED=true expect_error "IMDSv1 fallback disabled" "HTTP 405"
server_config '{"imds_mode": "norole"}'
expect_error "IMDS without a role" "no IAM role"
server_config '{"imds_mode": "v2"}'

# ---- container endpoint ---------------------------------------------------------------
imds_before=$(count imds_creds)
export AWS_CONTAINER_CREDENTIALS_FULL_URI="$base/container/creds"
AWS_CONTAINER_AUTHORIZATION_TOKEN=containerAUTHdoNotLeak expect_ok "container (FULL_URI + token)" container AKIDCONTAINER
[ "$(field 1 session_token)" = yes ] || fail "container credentials without a token"
AWS_CONTAINER_AUTHORIZATION_TOKEN=wrongAUTHdoNotLeak expect_error "container, wrong token" "HTTP 403"
printf 'containerAUTHdoNotLeak\n' >"$tmp/token-file"
AWS_CONTAINER_AUTHORIZATION_TOKEN=wrongAUTHdoNotLeak AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/token-file" \
  expect_ok "container (token file wins)" container AKIDCONTAINER
AWS_CONTAINER_CREDENTIALS_FULL_URI=http://192.0.2.1/creds expect_error "container FULL_URI off-host over http" "must be https"
[ "$(count imds_creds)" = "$imds_before" ] || fail "IMDS was asked although the container source is set"
export AWS_CONTAINER_AUTHORIZATION_TOKEN=containerAUTHdoNotLeak

# ---- credential_process ----------------------------------------------------------------
mkdir -p "$tmp/dir with space"
proc="$tmp/dir with space/proc.sh"
cat >"$proc" <<'EOF'
#!/bin/sh
# Test credential_process: a new key id per run, lifetime from PROC_LIFETIME.
d=$(dirname "$0")
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo $n >"$d/count"
[ "$1" = --flag ] || { echo "missing argument" >&2; exit 9; }
case "${PROC_MODE:-ok}" in
  fail) echo '{"Version": 1, "AccessKeyId": "AKIDX", "SecretAccessKey": "procSECRETdoNotLeak"}'; exit 3 ;;
  garbage) echo 'SecretAccessKey=procSECRETdoNotLeak not json' ; exit 0 ;;
  v2) echo '{"Version": 2, "AccessKeyId": "AKIDX", "SecretAccessKey": "procSECRETdoNotLeak"}'; exit 0 ;;
esac
exp=$(date -u -d "@$(( $(date +%s) + ${PROC_LIFETIME:-3600} ))" +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version": 1, "AccessKeyId": "AKIDPROC%04d", "SecretAccessKey": "procSECRETdoNotLeak",\n' $n
printf ' "SessionToken": "procSESSIONdoNotLeak", "Expiration": "%s"}\n' "$exp"
EOF
chmod +x "$proc"
proc_count() { cat "$tmp/dir with space/count" 2>/dev/null || echo 0; }
printf '[default]\nregion = us-east-1\ncredential_process = "%s" --flag\n' "$proc" >"$AWS_CONFIG_FILE"

container_before=$(count container_creds)
expect_ok "credential_process (quoted path, argument)" credential-process AKIDPROC
[ "$(count container_creds)" = "$container_before" ] || fail "container asked although credential_process is set"
PROC_MODE=fail expect_error "credential_process exit status" "exited with status 3"
PROC_MODE=garbage expect_error "credential_process garbage" "not a JSON object"
PROC_MODE=v2 expect_error "credential_process Version 2" "Version"

# ---- precedence -------------------------------------------------------------------------
# Static keys in the config file come after credential_process (botocore's order).
printf '[default]\ncredential_process = "%s" --flag\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = cfgSECRETdoNotLeak\n' \
  "$proc" >"$AWS_CONFIG_FILE"
expect_ok "credential_process before config-file keys" credential-process AKIDPROC
printf '[default]\naws_access_key_id = AKIDCREDFILE\naws_secret_access_key = credSECRETdoNotLeak\n[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = credSECRETdoNotLeak\n' \
  >"$AWS_SHARED_CREDENTIALS_FILE"
expect_ok "shared credentials file before credential_process" shared-credentials-file AKIDCREDFILE
export AWS_ACCESS_KEY_ID=AKIDENVIRONMENT AWS_SECRET_ACCESS_KEY=envSECRETdoNotLeak
expect_ok "environment first" environment AKIDENVIRONMENT
expect_ok "explicit profile skips the environment" shared-credentials-file AKIDOTHER -p other
AWS_PROFILE=other expect_ok "AWS_PROFILE keeps the environment" environment AKIDENVIRONMENT
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
: >"$AWS_SHARED_CREDENTIALS_FILE"
printf '[default]\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = cfgSECRETdoNotLeak\n' >"$AWS_CONFIG_FILE"
expect_ok "config-file keys before the container" config-file AKIDCONFIGFILE
: >"$AWS_CONFIG_FILE"
expect_ok "container before IMDS" container AKIDCONTAINER
unset AWS_CONTAINER_CREDENTIALS_FULL_URI
expect_ok "IMDS last" imds AKIDIMDS

# ---- refresh -------------------------------------------------------------------------------
printf '[default]\ncredential_process = "%s" --flag\n' "$proc" >"$AWS_CONFIG_FILE"
keys() { sed -n 's/.*access_key_id=\([^ ]*\).*/\1/p' "$tmp/out" | tr '\n' ' '; }

# Advisory window (14 min left < 15): the caller keeps the current ones and
# the refresh runs in the background; a later call sees the new ones.
before=$(proc_count)
# (Several later calls, so a slow machine still sees the refresh land.)
PROC_LIFETIME=840 run -n 6 -s 700 -r 0 || fail "advisory refresh: $(cat "$tmp/err")"
set -- $(keys)
[ "$1" = "$2" ] || fail "advisory window: the second call waited for a refresh ($*)"
[ "$6" != "$1" ] || fail "advisory window: never refreshed ($*)"
[ $(( $(proc_count) - before )) -ge 2 ] || fail "advisory refresh did not run the process again"
echo "ok   refresh in the advisory window: $*"

# Blocking window (30 s left < 60): the next call waits for new credentials.
PROC_LIFETIME=30 run -n 2 -s 100 -r 0 || fail "blocking refresh: $(cat "$tmp/err")"
set -- $(keys)
[ "$1" != "$2" ] || fail "blocking window: not refreshed ($*)"
echo "ok   refresh in the blocking window: $*"

# Short-lived credentials do not make every call run the process.
before=$(proc_count)
PROC_LIFETIME=30 run -n 5 -s 100 || fail "no-hammer: $(cat "$tmp/err")"
[ $(( $(proc_count) - before )) = 1 ] || fail "short-lived credentials re-ran the process $(( $(proc_count) - before )) times"
echo "ok   no refresh storm with short-lived credentials"

# Many threads in the advisory window: all succeed, few refreshes.
# At most one refresh per second (-r 1) may start, plus the first fetch.  Each
# thread runs for 2 s or more, so a second refresh is always due (at 1 s, a
# loaded machine could finish with only the first fetch).
before=$(proc_count)
start=$SECONDS
PROC_LIFETIME=840 run -T 8 -n 40 -s 50 -r 1 || fail "threads: $(cat "$tmp/err")"
took=$(( SECONDS - start ))
[ "$(grep -c '^source=credential-process' "$tmp/out")" = 320 ] || fail "threads: not 320 answers"
n=$(( $(proc_count) - before ))
[ $n -ge 2 ] && [ $n -le $(( took + 3 )) ] ||
  fail "threads: the process ran $n times for 320 calls over ${took}s"
echo "ok   8 threads x 40 calls, $n process runs"

# IMDS credentials are refreshed too, with a new session token PUT.
: >"$AWS_CONFIG_FILE"
server_config '{"lifetime": 30}'
tok_before=$(count imds_token)
run -n 2 -s 100 -r 0 || fail "IMDS refresh: $(cat "$tmp/err")"
set -- $(keys)
[ "$1" != "$2" ] || fail "IMDS credentials not refreshed ($*)"
[ $(( $(count imds_token) - tok_before )) = 2 ] || fail "IMDS refresh did not fetch a new token"
echo "ok   IMDS refresh: $*"

# ---- no secret anywhere ----------------------------------------------------------------
[ -s "$all" ] || fail "no output captured"
if grep -n doNotLeak "$all"; then
  fail "a secret appeared in the output above"
fi
echo "ok   no secret in $(wc -l <"$all") lines of output, errors and debug logs"
exit 0
