#!/usr/bin/env bash
# make fuzz: the atheris harnesses (time-boxed), then the property suite at 10000 examples
# per property and the full fault injection (100 + 100 map rewrites under load).
#
#   FUZZ_TIME=120                 seconds per atheris harness (3 harnesses)
#   HYPOTHESIS_MAX_EXAMPLES=10000 examples per hypothesis property
#   FAULT_REWRITES=100            valid and invalid rewrites each in tests/http/test_faults.py
#
# Output and the corpus libFuzzer grows go to fuzz/corpus-tmp/ (make clean removes it);
# fuzz/seeds/ holds the checked-in seeds and is never written to. A finding stops the run
# with libFuzzer's crash-* file in fuzz/corpus-tmp/ and the input's traceback.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
BIN=$VENV/bin
FUZZ_TIME=${FUZZ_TIME:-120}
export HYPOTHESIS_MAX_EXAMPLES=${HYPOTHESIS_MAX_EXAMPLES:-10000}
export FAULT_REWRITES=${FAULT_REWRITES:-100}
OUT=fuzz/corpus-tmp
mkdir -p "$OUT"
export FAULT_REPORT=$OUT/faults.jsonl  # tests/http/test_faults.py appends its figures here
rm -f "$FAULT_REPORT"

# atheris is the `fuzz` extra: wheels for CPython on x86-64 Linux and macOS; elsewhere it
# needs clang and libFuzzer to build. Without it the harnesses fall back to a plain byte
# mutator (no coverage guidance), and the summary says so.
if ! "$BIN/python" -c 'import atheris' 2>/dev/null; then
    "$BIN/pip" install -q -e '.[fuzz]' || echo "fuzz: atheris could not be installed" >&2
fi
if "$BIN/python" -c 'import atheris' 2>/dev/null; then
    ENGINE="atheris $("$BIN/python" -c 'import importlib.metadata as m; print(m.version("atheris"))') (libFuzzer, coverage-guided)"
else
    ENGINE="fallback byte mutator (atheris unavailable: NOT coverage-guided)"
fi

summary=()
run_harness() {  # name, seeds folder, extra libFuzzer options...
    local name=$1 seeds=$2
    shift 2
    mkdir -p "$OUT/$name"
    local log="$OUT/$name.log"
    echo "== fuzz/fuzz_$name.py for ${FUZZ_TIME}s ($ENGINE)"
    # -timeout: one input running longer than 10 s is a finding (a hang);
    # -rss_limit_mb: one input growing the process past 1 GiB is a finding.
    (cd fuzz && "../$BIN/python" "fuzz_$name.py" -max_total_time="$FUZZ_TIME" -timeout=10 \
        -rss_limit_mb=1024 -artifact_prefix="corpus-tmp/$name-" -print_final_stats=1 "$@" \
        "corpus-tmp/$name" "seeds/$seeds") >"$log" 2>&1 || {
        tail -40 "$log"
        echo "fuzz: fuzz_$name.py found something: see $log and $OUT/$name-crash-*" >&2
        exit 1
    }
    local runs corpus
    runs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
    corpus=$(find "$OUT/$name" -type f | wc -l)
    summary+=("fuzz_$name.py: $runs(s), 0 findings, corpus $corpus inputs (+ $(find "fuzz/seeds/$seeds" -type f | wc -l) seeds)")
}

run_harness canonical canonical
run_harness request canonical
run_harness mapfile mapfile -max_len=65536 -dict=mapfile.dict

echo "== properties ($HYPOTHESIS_MAX_EXAMPLES examples each), attack corpus, faults ($FAULT_REWRITES + $FAULT_REWRITES rewrites)"
start=$(date +%s)
"$BIN/pytest" -q tests/test_properties.py tests/test_hostile.py tests/http/test_faults.py \
    -o timeout=3600 | tee "$OUT/pytest.log" | tail -15
summary+=("pytest (properties, corpus, faults): $(tail -1 "$OUT/pytest.log") in $(($(date +%s) - start)) s")

echo
echo "== make fuzz summary ($ENGINE)"
printf '  %s\n' "${summary[@]}"
echo "  fault injection (requests, faults, wrong answers, 5xx, connection errors):"
"$BIN/python" - "$FAULT_REPORT" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    f = json.loads(line)
    print(f"    {f['test']}: {f['requests']} requests, {f['faults_injected']} faults,"
          f" {f['wrong_answers']} wrong, {f['server_errors_5xx']} 5xx,"
          f" {f['connection_errors']} connection errors")
PY
