#!/usr/bin/env bash
# The test command of README and CI: every *.test.ts under test/, with Node's
# own runner. Node 20 does not expand globs and silently runs nothing without
# explicit files, so the list is built here and an empty list is an error.
# Usage: npm test [-- <subdir or file> ...]   (default: unit, integration, e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(test/unit test/integration test/e2e)
mapfile -t files < <(find "${targets[@]}" -name '*.test.ts' -type f | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "no test files found under: ${targets[*]}" >&2
  exit 1
fi
exec node --no-warnings=ExperimentalWarning --import tsx --test --test-reporter=spec \
  --test-concurrency="${IBEX_TEST_CONCURRENCY:-2}" --test-timeout="${IBEX_TEST_TIMEOUT_MS:-600000}" "${files[@]}"
