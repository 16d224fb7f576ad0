# Helpers shared by the bench scripts that compare `cowimg bench` with
# `qemu-img bench` (sourced).
seconds() {  # one run of a bench command: its "Run completed in X seconds."
    "$@" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
fastest() {  # "seconds label" pairs as words: the pair with the fewest seconds
    printf '%s %s\n' "$@" | sort -g | head -n1
}
medians() {  # name of an array of "runs" (space-separated seconds), name of one to fill with their medians
    local -n runs_of=$1 median_of=$2
    local key
    for key in "${!runs_of[@]}"; do
        median_of[$key]=$(echo "${runs_of[$key]}" | median)
    done
}
scratch_dir() {  # a directory for the images, removed at exit (sets dir)
    dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cowvisor-bench.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
}
migrate_until_done() {  # QMP-SOCKET COMMAND...: sends the commands, then polls query-migrate until
    # "completed" (30 s at most); prints the source's "total-time downtime" in ms
    local sock=$1 out
    shift
    local cmds=("$@")
    for _ in $(seq 600); do
        out=$(python3 tests/vmstate/qmp.py "$sock" "${cmds[@]}" query-migrate | tail -1)
        cmds=(qmp_capabilities)
        grep -q '"status": "completed"' <<<"$out" && break
        sleep 0.05
    done
    python3 -c 'import json,sys; r=json.loads(sys.argv[1])["return"]; print(r.get("total-time",0), r.get("downtime",0))' "$out"
}
