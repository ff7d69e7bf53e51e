#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the gesture-web page test (tests/functional/test_web_page.py).
# Idempotent: nothing happens when both are there. Without apt-get or root it installs nothing
# and says so; the page test then skips with that reason, the rest of the suite runs.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "== chromium and chromedriver present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "== chromium/chromedriver not installed (needs root and apt-get): the page test will skip" >&2
  exit 0
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends chromium chromium-driver; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "== apt-get could not install chromium chromium-driver: the page test will skip" >&2
  exit 0
fi
echo "== $(/usr/bin/chromium --version 2>/dev/null) installed"
