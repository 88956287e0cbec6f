#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` and `chromium-driver`) for the
# browser tests of clients/js and the dashboard, when /usr/bin/chromium is
# missing. Needs root (CI and the project's machines run as root); anywhere
# else it stops with a message that says what to install.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-chromium.sh: /usr/bin/chromium is missing and this is not root:" >&2
  echo "  run as root: apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-chromium.sh: /usr/bin/chromium is missing and there is no apt-get:" >&2
  echo "  install Chromium with your system's package manager (it must be /usr/bin/chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-chromium.sh: installing chromium chromium-driver (apt-get)" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  echo "install-chromium.sh: apt-get finished but /usr/bin/chromium is still missing" >&2
  exit 1
fi
/usr/bin/chromium --version
