#!/usr/bin/env bash
. "$TESTS_DIR/lib.sh"
not_ok "not written yet"
done_testing
