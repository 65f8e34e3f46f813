# The test node image, shared by scripts/demo and the cm-pxed integration test: Debian's
# kernel and a busybox initramfs that prints "CM-NODE-BOOTED <kernel command line>" on the
# serial console and powers off (packages linux-image-amd64, busybox-static, cpio).
#   cm_node_image DIR    → DIR/vmlinuz, DIR/initrd.img
# shellcheck shell=bash
cm_node_image() {
  local dir=$1 kernel work
  kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -1)
  [ -n "$kernel" ] || { echo "no /boot/vmlinuz-*-amd64 (package linux-image-amd64)" >&2; return 1; }
  work=$(mktemp -d)
  mkdir -p "$dir" "$work/bin" "$work/proc" "$work/sys" "$work/dev"
  cp "$(command -v busybox)" "$work/bin/busybox"
  printf '%s\n' '#!/bin/busybox sh' '/bin/busybox --install -s /bin' \
    'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev' \
    'echo "CM-NODE-BOOTED $(cat /proc/cmdline)"' 'poweroff -f' > "$work/init"
  chmod +x "$work/init"
  (cd "$work" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$dir/initrd.img"
  cp "$kernel" "$dir/vmlinuz"
  rm -rf "$work"
}
