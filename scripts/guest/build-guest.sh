#!/usr/bin/env bash
# Builds the Linux guest that test/long/nvmf-kernel-initiator.test.ts boots under QEMU to test the
# builtin NVMe/TCP target with the Linux kernel's initiator (nvme-tcp + nvme-cli).
#
# Everything comes from Debian packages: debootstrap makes a minimal root of the host's own
# Debian release with linux-image-amd64, nvme-cli, e2fsprogs, kmod and iproute2, and a small
# init (guest-init.sh beside this script) instead of systemd. The result goes to a cache
# directory outside the repository (default /var/cache/spdk-node/guest, or $SPDK_NODE_GUEST_DIR):
#   vmlinuz, initrd.img  the Debian kernel and an initramfs that mounts /dev/vda
#   root.img             the root file system (raw ext4, used by QEMU with snapshot=on)
#   stamp                what was built from (a rebuild happens when this script or the init change)
# An up-to-date image is reused: a second run does nothing.
#
# Usage: scripts/guest/build-guest.sh [--install-tools] [--dir DIR] [--mirror URL] [--force] [--keep-root]
#   --install-tools  apt-get install the tools it needs (qemu-system-x86, debootstrap, e2fsprogs)
#                    when they are missing; without it nothing is installed
#   --dir DIR        the cache directory
#   --mirror URL     the Debian mirror (default: the one the host's apt sources use)
#   --force          rebuild even when up to date
#   --keep-root      keep the debootstrapped tree (DIR/root) for inspection
# Needs root (debootstrap, chroot) and a few minutes; the image is about 1 GB (sparse).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${SPDK_NODE_GUEST_DIR:-/var/cache/spdk-node/guest}
mirror=
install_tools=0
force=0
keep_root=0
while [ $# -gt 0 ]; do
  case $1 in
    --install-tools) install_tools=1 ;;
    --dir) dir=$2; shift ;;
    --mirror) mirror=$2; shift ;;
    --force) force=1 ;;
    --keep-root) keep_root=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-guest: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build-guest: $*"; }
die() { echo "build-guest: $*" >&2; exit 1; }

[ -r /etc/os-release ] || die "no /etc/os-release: the host must be Debian"
# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = debian ] || die "the host is ${ID:-unknown}, not Debian: the guest is built from the host's Debian release"
release=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
[ "$(uname -m)" = x86_64 ] || die "the guest is amd64 and needs an x86_64 host"

packages=linux-image-amd64,nvme-cli,e2fsprogs,kmod,iproute2,util-linux
stamp_want="release=$release packages=$packages build=$(cat "$0" "$here/guest-init.sh" | sha256sum | cut -c1-16)"

need_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  echo "${missing[@]}"
}
missing=$(need_tools)
if [ -n "$missing" ] && [ "$install_tools" = 1 ]; then
  say "installing $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  missing=$(need_tools)
  [ -z "$missing" ] || die "still missing after apt-get install: $missing"
fi

if [ "$force" = 0 ] && [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp_want" ] \
  && [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ] && [ -s "$dir/root.img" ]; then
  say "up to date in $dir ($stamp_want)"
  exit 0
fi

[ -z "$missing" ] || die "missing $missing: run with --install-tools (apt-get install -y qemu-system-x86 debootstrap e2fsprogs)"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"

if [ -z "$mirror" ]; then
  # The mirror the host's apt uses for its own release (deb822 .sources or one-line .list).
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v rel="$release" '
      /^$/ { if (uri != "" && suites ~ ("(^| )" rel "( |$)")) { print uri; exit } uri = ""; suites = "" }
      /^URIs:/ { uri = $2 } /^Suites:/ { $1 = ""; suites = $0 }
      END { if (uri != "" && suites ~ ("(^| )" rel "( |$)")) print uri }' | head -1)
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v rel="$release" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i + 1) == rel) { print $i; exit } break } }' | head -1)
  fi
  [ -n "$mirror" ] || die "could not find the host's Debian mirror for $release in /etc/apt: pass --mirror URL"
fi

start=$(date +%s)
mkdir -p "$(dirname "$dir")"
work=$(mktemp -d "$(dirname "$dir")/.guest-build.XXXXXX")
root=$work/root
cleanup() {
  for m in "$root/proc" "$root/sys" "$root/dev"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

say "debootstrap $release from $mirror into $root (packages: $packages)"
if ! debootstrap --variant=minbase --include="$packages" "$release" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -30 "$work/debootstrap.log" >&2
  [ -f "$root/debootstrap/debootstrap.log" ] && tail -30 "$root/debootstrap/debootstrap.log" >&2
  die "debootstrap failed"
fi

# The initramfs only needs to find /dev/vda (virtio-blk, ext4); a short module list keeps it small
# and fast to unpack under software emulation. Everything else is loaded from the root.
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo 'MODULES=list' >"$root/etc/initramfs-tools/conf.d/spdk-node-guest"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
chroot "$root" update-initramfs -u -k all >"$work/initramfs.log" 2>&1 || { cat "$work/initramfs.log" >&2; die "update-initramfs failed"; }
# nvme-cli's host NQN and host ID (its package script makes them; make sure).
mkdir -p "$root/etc/nvme"
[ -s "$root/etc/nvme/hostnqn" ] || chroot "$root" nvme gen-hostnqn >"$root/etc/nvme/hostnqn"
[ -s "$root/etc/nvme/hostid" ] || cat /proc/sys/kernel/random/uuid >"$root/etc/nvme/hostid"
umount "$root/dev" "$root/sys" "$root/proc"

install -m 0755 "$here/guest-init.sh" "$root/sbin/spdk-node-guest-init"
echo spdk-node-guest >"$root/etc/hostname"
: >"$root/etc/fstab"
# What the test never uses.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
  "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/debootstrap"

kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)
[ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel or initrd in $root/boot"
kver=${kernel##*/vmlinuz-}
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"

used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + 256))
say "root is ${used_mb} MB; making a ${size_mb} MB ext4 image"
mkfs.ext4 -q -F -L spdk-node-guest -d "$root" "$work/root.img" "${size_mb}M"

echo "$stamp_want" >"$work/stamp.new"
echo "kernel=$kver nvme-cli=$(chroot "$root" dpkg-query -W -f '${Version}' nvme-cli) built=$(date -u +%FT%TZ)" >"$work/info"
mkdir -p "$dir"
rm -f "$dir/stamp"
for f in vmlinuz initrd.img root.img info; do mv -f "$work/$f" "$dir/$f"; done
rm -rf "$dir/root"
[ "$keep_root" = 0 ] || mv "$root" "$dir/root"
mv -f "$work/stamp.new" "$dir/stamp"
say "built in $(($(date +%s) - start)) s: $dir ($(cat "$dir/info"))"
