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
