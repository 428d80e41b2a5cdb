#!/usr/bin/env bash
# Installs what parley needs on Debian 12 (run as root, or it uses sudo).
#   deploy/install-deps.sh          build and run a hub
#   deploy/install-deps.sh --test   also what the test suite needs
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

pkgs=(build-essential cmake pkg-config
      libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libjansson-dev
      libhiredis-dev libssl-dev openssl ca-certificates curl)
if [ "${1:-}" = "--test" ]; then
  # Independent clients and servers used by the tests; clang for fuzzing.
  # chromium for the web page's test; nodejs/npm only where no node is
  # installed (playwright-core wants node 20; machines here ship it).
  pkgs+=(python3 python3-websockets redis-server clang libclang-rt-14-dev
         chromium fonts-dejavu-core iproute2 procps)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps: ok (${#pkgs[@]} packages)"
