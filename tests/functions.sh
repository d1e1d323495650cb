# functions.sh - shared helpers for the ebsfs integration tests.
#
# Source it from a test script:  . "${top_srcdir:-.}/tests/functions.sh"
# Exit 77 means "skipped on this machine" (automake's convention).  Every
# test gets its own emulator on free ports, its own temp dirs, and cleans up
# through one trap chain (on_exit), so tests can run in parallel.
# It does not change shell options (no set -e/-u): that is each test's call.

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${PYTHON3:=python3}"
export top_srcdir top_builddir PYTHON3

EMULATOR="$top_srcdir/tests/emulator/ebs-emulator"

# ---- cleanup chain --------------------------------------------------------------
# on_exit CMD: run CMD (a string, eval'd) when the test exits, last registered first.
_on_exit_cmds=()
_run_on_exit() {
  local rc=$? i
  for (( i=${#_on_exit_cmds[@]}-1; i>=0; i-- )); do
    eval "${_on_exit_cmds[$i]}" || true
  done
  _on_exit_cmds=()
  return $rc
}
on_exit() {
  if [ ${#_on_exit_cmds[@]} -eq 0 ]; then
    trap _run_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
  _on_exit_cmds+=("$1")
}

# ---- skips ------------------------------------------------------------------------------
skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed"
  done
}
requires_root() { [ "$(id -u)" -eq 0 ] || skip "needs root"; }
requires_fuse() {
  [ -c /dev/fuse ] || skip "/dev/fuse is missing"
  [ -r /dev/fuse ] && [ -w /dev/fuse ] || skip "/dev/fuse is not usable by $(id -un)"
  command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 is not installed"
}
requires_loop() {
  command -v losetup >/dev/null 2>&1 || skip "losetup is not installed"
  losetup -f >/dev/null 2>&1 || skip "no usable loop device (losetup -f failed)"
}

# ---- the emulator ---------------------------------------------------------------
# start_emulator [serve options...]: a fresh emulator with a fresh data dir.
# Sets EMU_URL, EMU_ADMIN_URL, EMU_DATA_DIR, EMU_PID, EMU_TMP, EMU_LOG and an
# AWS environment pointing at it with the emulator's default credentials.
start_emulator() {
  requires "$PYTHON3" curl
  EMU_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ebsemu.XXXXXX") || fail "mktemp"
  on_exit "rm -rf '$EMU_TMP'"
  EMU_DATA_DIR="$EMU_TMP/data"
  EMU_LOG="$EMU_TMP/emulator.log"
  mkdir -p "$EMU_DATA_DIR" "$EMU_TMP/home"
  on_exit "stop_emulator"
  _launch_emulator "$@"
  # The AWS environment every client (ebsfs, aws, botocore) picks up.
  : >"$EMU_TMP/aws-config"
  : >"$EMU_TMP/aws-credentials"
  export HOME="$EMU_TMP/home"
  export AWS_CONFIG_FILE="$EMU_TMP/aws-config"
  export AWS_SHARED_CREDENTIALS_FILE="$EMU_TMP/aws-credentials"
  export AWS_ACCESS_KEY_ID=AKIDEXAMPLE
  export AWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL_EBS="$EMU_URL"
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL
}

# _running PID: the process exists and is not a zombie waiting to be reaped.
_running() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

# _launch_emulator [serve options]: starts the server on $EMU_DATA_DIR, waits
# (at most 10 s) for its port files, sets EMU_URL/EMU_ADMIN_URL/EMU_PID.
_launch_emulator() {
  rm -f "$EMU_TMP/port" "$EMU_TMP/admin-port"
  "$PYTHON3" "$EMULATOR" serve --data-dir "$EMU_DATA_DIR" \
    --port-file "$EMU_TMP/port" --admin-port-file "$EMU_TMP/admin-port" "$@" \
    >>"$EMU_LOG" 2>&1 &
  EMU_PID=$!
  local i
  for (( i=0; i<200; i++ )); do
    [ -s "$EMU_TMP/port" ] && [ -s "$EMU_TMP/admin-port" ] && break
    _running "$EMU_PID" || { cat "$EMU_LOG" >&2; fail "the emulator exited at start"; }
    sleep 0.05
  done
  [ -s "$EMU_TMP/port" ] && [ -s "$EMU_TMP/admin-port" ] ||
    { cat "$EMU_LOG" >&2; fail "the emulator did not start in 10 s"; }
  EMU_PORT=$(cat "$EMU_TMP/port")
  EMU_ADMIN_PORT=$(cat "$EMU_TMP/admin-port")
  EMU_URL="http://127.0.0.1:$EMU_PORT"
  EMU_ADMIN_URL="http://127.0.0.1:$EMU_ADMIN_PORT"
  export EMU_URL EMU_ADMIN_URL EMU_DATA_DIR EMU_PID EMU_TMP EMU_LOG EMU_PORT EMU_ADMIN_PORT
  export AWS_ENDPOINT_URL_EBS="$EMU_URL"
}

# restart_emulator [serve options]: kill -9 the emulator and start a new one
# on the same data dir (new ports: EMU_URL and AWS_ENDPOINT_URL_EBS change).
restart_emulator() {
  if [ -n "${EMU_PID:-}" ]; then
    kill -9 "$EMU_PID" 2>/dev/null
    wait "$EMU_PID" 2>/dev/null
  fi
  _launch_emulator "$@"
}

stop_emulator() {
  [ -n "${EMU_PID:-}" ] || return 0
  local i
  kill "$EMU_PID" 2>/dev/null
  for (( i=0; i<50; i++ )); do
    _running "$EMU_PID" || break
    sleep 0.05
  done
  kill -9 "$EMU_PID" 2>/dev/null
  wait "$EMU_PID" 2>/dev/null
  EMU_PID=
  return 0
}

# emu SUBCOMMAND ARGS...: the emulator's CLI on this test's data dir.
emu() {
  local sub=$1; shift
  "$PYTHON3" "$EMULATOR" "$sub" --data-dir "$EMU_DATA_DIR" "$@"
}
emu_import() { emu import "$@"; }                 # FILE [--description D] -> snapshot id
emu_export() { emu export "$@"; }                 # SNAP FILE [--size BYTES]
emu_synth() { emu synth "$@"; }                   # --size-gib N [--every K] [--seed S] -> id

# emu_admin METHOD PATH [JSON]: prints the admin endpoint's JSON answer.
emu_admin() {
  local method=$1 path=$2
  if [ $# -ge 3 ]; then
    curl -sS --fail-with-body --max-time 10 -X "$method" \
      -H 'Content-Type: application/json' --data-binary "$3" "$EMU_ADMIN_URL$path"
  else
    curl -sS --fail-with-body --max-time 10 -X "$method" "$EMU_ADMIN_URL$path"
  fi
}
emu_counter() {                                   # OP -> integer
  emu_admin GET /counters |
    "$PYTHON3" -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"
}
emu_reset_counters() { emu_admin POST /counters/reset >/dev/null; }
emu_config() { emu_admin POST /config "$1" >/dev/null; }
emu_faults() { emu_admin POST /faults "$1" >/dev/null; }
emu_clear_faults() { emu_admin DELETE /faults >/dev/null; }
