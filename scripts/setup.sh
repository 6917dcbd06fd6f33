#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine, then the npm packages:
# - Chromium for the Playwright suite (Playwright does not download browsers here),
# - Go with hashicorp/yamux and gorilla/websocket for the interop peer,
# - redis-server for the cluster tests (each test starts its own on a free port, without persistence).
# Anything already present is left alone. WSLIS_CHROMIUM points at another browser binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if [ -z "${WSLIS_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/hashicorp/yamux ] || need+=(golang-github-hashicorp-yamux-dev)
[ -d /usr/share/gocode/src/github.com/gorilla/websocket ] || need+=(golang-github-gorilla-websocket-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
