#!/usr/bin/env bash
# Installs what the browser and stack suites and the benchmarks need from
# Debian's packages, when missing: Chromium (tests/e2e), PostgreSQL and Redis
# (tests/stack, bench), wrk (bench).
# Needs root (or sudo). Outside CI a failure only warns: those suites then skip
# with a loud reason. With CI=true a failure fails the run.
set -uo pipefail

packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)  # the benchmarks' load generator

if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi

echo "Installing test dependencies from Debian: ${packages[*]}"
if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Services must not start at install time; the tests start their own on loopback.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  if $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
    $sudo rm -f /usr/sbin/policy-rc.d
    exit 0
  fi
  $sudo rm -f /usr/sbin/policy-rc.d
fi

message="could not install ${packages[*]} (needs root and Debian's apt)"
if [ "${CI:-}" = "true" ]; then
  echo "ERROR: $message" >&2
  exit 1
fi
echo "WARNING: $message; the suites that need them will be skipped." >&2
exit 0
