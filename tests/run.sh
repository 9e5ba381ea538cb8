#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run pytest.
#
#   bash tests/run.sh [pytest args...]
#
# - creates .venv (if missing) and installs xunjian with its dev extra;
# - PostgreSQL: uses $XUNJIAN_TEST_PG_URL if set; otherwise, when it can
#   (root and apt-get), installs and starts a local PostgreSQL server and
#   creates a role and a database for the tests; otherwise the PostgreSQL
#   half of the store tests is skipped with a message (under CI it fails);
# - Chromium: installs Debian's chromium and a CJK font (apt-get, when root) for the
#   browser tests, which Playwright drives (no browser download);
# - runs pytest with a throw-away XUNJIAN_HOME, so your own data is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[tests/run.sh]\033[0m %s\n' "$*"; }

# -- Python environment -----------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
say "installing xunjian[dev] into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"

# -- PostgreSQL ---------------------------------------------------------------------
start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$ver" main >/dev/null
  fi
  say "starting PostgreSQL"
  pg_lsclusters -h | while read -r ver name _; do pg_ctlcluster "$ver" "$name" start 2>/dev/null || true; done
  for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  pg_isready -h 127.0.0.1
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='xunjian'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE xunjian LOGIN PASSWORD 'xunjian' CREATEDB\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='xunjian_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O xunjian xunjian_test"
  export XUNJIAN_TEST_PG_URL="postgresql+psycopg://xunjian:xunjian@127.0.0.1/xunjian_test"
}

if [ -z "${XUNJIAN_TEST_PG_URL:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    start_postgres
  else
    say "no XUNJIAN_TEST_PG_URL and no root: PostgreSQL tests will be skipped"
  fi
fi

# -- Chromium for the browser tests (Playwright drives Debian's chromium) ---------------
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium and a CJK font (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
  else
    say "no chromium and no root: the browser tests will be skipped"
  fi
fi

# -- run ----------------------------------------------------------------------------
XUNJIAN_HOME=$(mktemp -d)
export XUNJIAN_HOME
trap 'rm -rf "$XUNJIAN_HOME"' EXIT
say "pytest (XUNJIAN_HOME=$XUNJIAN_HOME, PostgreSQL: ${XUNJIAN_TEST_PG_URL:-none})"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  say "pytest collected no tests"
  rc=0
fi
exit "$rc"
