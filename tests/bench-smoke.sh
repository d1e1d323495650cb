#!/usr/bin/env bash
# bench-smoke.sh - the benchmark harness works: `tests/bench/run --quick` runs
# every scenario with tiny sizes in seconds and writes a well-formed JSON
# report and Markdown table.  Never a speed threshold: the figures of a quick
# run mean nothing, only their presence and shape are checked.
. "${top_srcdir:-.}/tests/functions.sh"
set -u
requires "$PYTHON3" curl
[ -x "$top_builddir/tests/bench/fetcher" ] || skip "tests/bench/fetcher is not built"

out=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX") || fail mktemp
on_exit "rm -rf '$out'"

timeout 600 "$PYTHON3" "$top_srcdir/tests/bench/run" --quick --out "$out" >"$out/stdout" 2>"$out/stderr" ||
  { cat "$out/stderr" >&2; fail "tests/bench/run --quick exited $?"; }

json=$(ls "$out"/*.json 2>/dev/null)
md=$(ls "$out"/*.md 2>/dev/null)
[ -n "$json" ] && [ "$(echo "$json" | wc -l)" -eq 1 ] || fail "expected one JSON report in $out"
[ -n "$md" ] || fail "expected a Markdown report in $out"

# The JSON: the header fields, every scenario present, each either measured
# (figures with a median) or "not run" with a reason, never both silent.
"$PYTHON3" - "$json" "$top_srcdir/tests/bench/run" <<'PY' || fail "malformed JSON report"
import json, subprocess, sys
rep = json.load(open(sys.argv[1]))
for k in ("commit", "date", "machine", "quick", "repeats", "scenarios"):
    assert k in rep, "missing %s" % k
assert rep["quick"] is True
names = subprocess.run([sys.executable, sys.argv[2], "--list"], stdout=subprocess.PIPE,
                       check=True, universal_newlines=True).stdout.split()
assert names and set(names) == set(rep["scenarios"]), (names, list(rep["scenarios"]))
for name, r in rep["scenarios"].items():
    assert "error" not in r, "%s failed: %s" % (name, r["error"])
    if "not_run" in r:
        assert r["not_run"], name
        print("%s: not run: %s" % (name, r["not_run"]), file=sys.stderr)
        continue
    assert "target" in r or name == "emulator", name
    if "ebsfs" in r:
        assert "ratio" in r, name
        for v in r["ebsfs"].values():
            if isinstance(v, dict):
                assert v["n"] >= 1 and v["min"] <= v["median"] <= v["max"], (name, v)
# The machine's state: fresh memory timed at both ends.
assert rep["machine"]["fresh_64mib_ms_start"] > 0 and rep["machine"]["fresh_64mib_ms_end"] > 0
# The reference side always runs for the read scenarios.
assert rep["scenarios"]["seq-read"]["reference"]["mib_s"]["median"] > 0
assert rep["scenarios"]["first-file"]["reference"]["seconds"]["median"] > 0
# Where ebsfs ran first-file, the same steps were timed from a local image too.
ff = rep["scenarios"]["first-file"]
if "ebsfs" in ff:
    assert ff["local_image_s"]["n"] >= 1 and ff["local_image_s"]["median"] > 0, ff
PY

# The Markdown: a header and one table row per scenario.
grep -q '^# ebsfs benchmark results' "$md" || fail "no title in $md"
grep -q '^- commit: `[0-9a-f]' "$md" || fail "no commit in $md"
grep -q '^| scenario | ebsfs | reference | ratio | target |' "$md" || fail "no table in $md"
for s in $("$PYTHON3" "$top_srcdir/tests/bench/run" --list); do
  grep -q "^| $s |" "$md" || fail "no row for $s in $md"
done
cmp -s "$md" "$out/stdout" || fail "stdout is not the Markdown report"
exit 0
