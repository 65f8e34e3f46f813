# Shared by scripts/*: package installation, the Swift toolchain, logging.
# shellcheck shell=bash

cm_say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
cm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The repository root, wherever the script was called from.
cm_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

# apt-get install only what is missing; apt-get update first (once per run).
cm_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || cm_die "packages missing (${missing[*]}); run as root so they can be installed"
  cm_say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${CM_APT_UPDATED:-}" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    CM_APT_UPDATED=1
  fi
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build dependencies of the Swift package (system libraries it links).
CM_BUILD_PACKAGES=(libsystemd-dev libcurl4-openssl-dev libsqlite3-dev libpam0g-dev pkg-config)
# What the tests and the demo run against: real peers, namespaces, lint tools.
CM_TEST_PACKAGES=(nginx-light prometheus-node-exporter mandoc iproute2 jq procps util-linux systemd python3 python3-websockets curl iputils-ping keepalived wrk
  qemu-system-x86 ipxe-qemu ovmf dnsmasq-base linux-image-amd64 busybox-static cpio
  glusterfs-server nfs-ganesha nfs-ganesha-gluster rpcbind mmdebstrap openssh-client
  openssl libjs-chart.js chromium chromium-driver python3-selenium fonts-dejavu-core openipmi ipmitool
  rsync btrfs-progs xfsprogs postgresql-15)

cm_swift() {
  if ! command -v swift >/dev/null 2>&1; then
    [ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
  fi
  command -v swift >/dev/null 2>&1 || cm_die "swift not found (expected at /opt/swift/usr/bin)"
}
