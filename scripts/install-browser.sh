#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (tests/browser), which drive it with Playwright
# through `executable_path`: no `playwright install`, no download from outside the distribution.
# Does nothing when $CHROMIUM_PATH (default /usr/bin/chromium) is already executable. Needs root
# and apt-get; exits non-zero with the reason otherwise.
set -euo pipefail
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: $CHROMIUM is missing and installing it needs root (apt-get install chromium)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: $CHROMIUM is missing and there is no apt-get to install it with" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends chromium; }
# A fresh machine (or container) may have no package lists, or stale ones: refresh and retry once.
install || { apt-get update -q && install; }
if [ ! -x "$CHROMIUM" ]; then
  echo "install-browser: installed the chromium package but $CHROMIUM is still not executable" >&2
  exit 1
fi
