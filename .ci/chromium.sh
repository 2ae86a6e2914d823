#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when either is missing, for the web console's
# browser tests (crates/wacrm/tests/common/browser.rs), and prints their versions.
# Usage: bash .ci/chromium.sh
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# Debian's launcher script prints a shell warning on some /dev/shm mounts: only the version.
chromium --version 2>/dev/null
chromedriver --version
