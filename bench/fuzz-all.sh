#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a while each (default 20s).
# New interesting inputs land in the package's testdata/fuzz/<Target>/,
# which `go test` replays as regression cases: commit the ones worth keeping.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== $pkg $target ($fuzztime)"
		go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime"
	done
done
