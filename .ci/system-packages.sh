#!/usr/bin/env bash
# The system components the suite drives for real: SoftHSM2 and OpenSC (PKCS#11 keys),
# PostgreSQL (the shared storage engine) and Chromium (the web view in a real browser).
# `make test` runs this first; it installs from the system packages only what is missing, so
# a fresh machine and CI need no hand steps. `make run` needs none of these.
set -euo pipefail

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs these system packages: ${missing[*]} (install them as root, e.g. apt-get install ${missing[*]})" >&2
  exit 2
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
