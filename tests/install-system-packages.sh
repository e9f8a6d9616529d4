#!/usr/bin/env bash
# Install the Debian packages the tests run for real, when absent: `prometheus` (prometheus,
# promtool), `prometheus-alertmanager` (prometheus-alertmanager, amtool) and `chromium` (the
# status page test renders the page in headless Chromium), and `python3-venv` when
# /usr/bin/python3 cannot make virtual environments (the `make install` test builds the
# service's environment on it, as `make install` does). Fails loudly when it cannot. A missing /usr/sbin/policy-rc.d is created for the
# install (and removed after) so that the packages do not start system-wide daemons.
set -euo pipefail

need=()
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v amtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
system_venv() { [ ! -x /usr/bin/python3 ] || /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }
system_venv || need+=(python3-venv)
if [ "${1:-}" = bench ]; then  # the benchmarks' HTTP load generator
  command -v hey >/dev/null 2>&1 || need+=(hey)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "error: the tests need the Debian packages: ${need[*]}; run as root: apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the tests need ${need[*]} and this machine has no apt-get; install them by hand" >&2
  exit 1
fi

created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

echo "installing Debian packages: ${need[*]}"
"${sudo[@]}" apt-get update -q
# Ubuntu ships Chromium only as a snap: its "chromium" package is none (or a snap stub).
if printf '%s\n' "${need[@]}" | grep -qx chromium; then
  candidate=$(apt-cache policy chromium 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$candidate" ] || [ "$candidate" = "(none)" ] || grep -qi ubuntu /etc/os-release 2>/dev/null; then
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
      echo "error: the status page test needs Chromium, and this distribution has no chromium deb" >&2
      echo "       (Ubuntu ships it as a snap): snap install chromium, then run make test again" >&2
      exit 1
    fi
    mapfile -t need < <(printf '%s\n' "${need[@]}" | grep -vx chromium)
    [ ${#need[@]} -eq 0 ] && exit 0
  fi
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
tools=(prometheus promtool prometheus-alertmanager amtool)
command -v chromium-browser >/dev/null 2>&1 || tools+=(chromium)
[ "${1:-}" = bench ] && tools+=(hey)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool still missing after installing ${need[*]}" >&2; exit 1; }
done
system_venv || { echo "error: /usr/bin/python3 still cannot make virtual environments" >&2; exit 1; }
