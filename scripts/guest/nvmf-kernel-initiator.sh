#!/bin/sh
# Runs inside the test guest (as the share's run.sh, see guest-init.sh): the Linux kernel's
# NVMe/TCP initiator and nvme-cli against the host's target, reached at 10.0.2.2 through QEMU's
# user-mode network. Parameters come from params.env beside this script (written by
# test/long/nvmf-kernel-initiator.test.ts): TRADDR TRSVCID NQN MODEL SERIAL PATTERN.
#
# Steps: modprobe nvme-tcp; nvme discover (the subsystem must be listed); nvme connect; find the
# namespace whose controller reports MODEL (and SERIAL, NQN) in Identify Controller; mkfs.ext4;
# mount; copy PATTERN (a file in the share the host generated) onto it; sync; umount; e2fsck;
# record the file's physical blocks with debugfs; drop caches; mount again; compare the file with
# PATTERN; umount; nvme disconnect; the block device must go away. Then once more with header
# and data digests and two I/O queues: connect, e2fsck, mount, compare, copy the file, remount,
# compare the copy, e2fsck, disconnect.
#
# Ends with one line on the console:
#   SPDK-NODE-GUEST-RESULT {"ok":true|false,"step":"...",...}
# and leaves logs (each command's output, dmesg) in the share's out/ directory.
share=$(cd "$(dirname "$0")" && pwd)
. "$share/params.env"
out=$share/out
mkdir -p "$out"
mnt=/mnt/ns
mkdir -p "$mnt"

step=start
dev=
blocks=
sha=
queues=
t0=$(cut -d' ' -f1 /proc/uptime)

now() { cut -d' ' -f1 /proc/uptime; }
log() { echo "guest[$(now)s]: $*"; }
# run NAME CMD...: runs CMD with its output on the console and in out/NAME.txt; fails the test
# at step NAME when CMD fails.
run() {
  step=$1
  shift
  log "\$ $*"
  "$@" >"$out/$step.txt" 2>&1
  rc=$?
  sed 's/^/    /' "$out/$step.txt"
  [ $rc = 0 ] || fail "'$*' exited with $rc"
}
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\n\r'; }
result() { # ok detail
  hostnqn=$(cat /etc/nvme/hostnqn 2>/dev/null)
  printf 'SPDK-NODE-GUEST-RESULT {"ok":%s,"step":"%s","detail":"%s","kernel":"%s","nvmeCli":"%s","hostnqn":"%s","device":"%s","fsBlockSize":4096,"blocks":"%s","sha256":"%s","digestQueues":"%s","seconds":%s}\n' \
    "$1" "$step" "$(json_str "$2")" "$(uname -r)" "$(json_str "$(nvme version 2>&1 | head -1)")" \
    "$(json_str "$hostnqn")" "$dev" "$blocks" "$sha" "$queues" "$(echo "$(now) $t0" | awk '{ printf "%.1f", $1 - $2 }')"
}
fail() {
  log "FAILED at $step: $1"
  dmesg >"$out/dmesg.txt" 2>&1
  log "last kernel messages:"
  dmesg | tail -60 | sed 's/^/    /'
  umount "$mnt" 2>/dev/null
  nvme disconnect -n "$NQN" >/dev/null 2>&1
  result false "$1"
  exit 1
}

find_dev() { # the namespace whose controller reports MODEL, once the kernel has scanned it
  step=find-device
  dev=
  i=0
  while [ -z "$dev" ] && [ $i -lt 100 ]; do
    for d in /dev/nvme*n*; do
      case $d in *[0-9]n[0-9]*p*|*c[0-9]*n*) continue ;; esac
      [ -b "$d" ] || continue
      mn=$(nvme id-ctrl "$d" 2>/dev/null | sed -n 's/^mn *: *//p' | sed 's/ *$//')
      if [ "$mn" = "$MODEL" ]; then dev=$d; break; fi
    done
    [ -n "$dev" ] || { sleep 0.2; i=$((i + 1)); }
  done
  [ -n "$dev" ] || { ls -l /dev/nvme* 2>&1 | sed 's/^/    /'; fail "no /dev/nvme*n* whose model number is '$MODEL'"; }
}
disconnect() { # NAME: nvme disconnect, and the block device goes away
  run "$1" nvme disconnect -n "$NQN"
  grep -q "disconnected 1 controller" "$out/$1.txt" || fail "nvme disconnect did not disconnect one controller"
  i=0
  while [ -b "$dev" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  [ ! -b "$dev" ] || fail "$dev is still there after nvme disconnect"
}

log "target $TRADDR:$TRSVCID $NQN, model '$MODEL'"
run modprobe modprobe nvme-tcp
run discover nvme discover -t tcp -a "$TRADDR" -s "$TRSVCID"
grep -q "subnqn: *$NQN\$" "$out/discover.txt" || fail "the discovery log does not list $NQN"
grep -q "trsvcid: *$TRSVCID\$" "$out/discover.txt" || fail "the discovery log does not list port $TRSVCID"
run connect nvme connect -t tcp -a "$TRADDR" -s "$TRSVCID" -n "$NQN"

find_dev
log "namespace with model '$MODEL': $dev"
run id-ctrl nvme id-ctrl "$dev"
sn=$(sed -n 's/^sn *: *//p' "$out/id-ctrl.txt" | sed 's/ *$//')
[ "$sn" = "$SERIAL" ] || fail "serial number '$sn', configured '$SERIAL'"
grep -q "^subnqn *: *$NQN\$" "$out/id-ctrl.txt" || fail "Identify Controller's subnqn is not $NQN"
run id-ns nvme id-ns "$dev"
run list nvme list

run mkfs mkfs.ext4 -F -b 4096 -L spdknode "$dev"
run mount mount -t ext4 "$dev" "$mnt"
run write cp "$share/$PATTERN" "$mnt/pattern.bin"
run sync sync
sha=$(sha256sum "$mnt/pattern.bin" | cut -d' ' -f1)
run umount umount "$mnt"
run fsck e2fsck -fn "$dev"
# Physical 4 KiB blocks of the file, as ranges "first+count,...".
step=blocks
blocks=$(debugfs -R 'blocks /pattern.bin' "$dev" 2>/dev/null | tr ' ' '\n' | awk '
  /^[0-9]+$/ { if (n && $1 == s + n) { n++ } else { if (n) { printf "%s%d+%d", sep, s, n; sep = "," } s = $1; n = 1 } }
  END { if (n) printf "%s%d+%d", sep, s, n }')
[ -n "$blocks" ] || fail "debugfs found no blocks for /pattern.bin"
log "pattern.bin blocks: $blocks"
run drop-caches sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches; blockdev --flushbufs '"$dev"
run remount mount -t ext4 -o ro "$dev" "$mnt"
run compare cmp "$mnt/pattern.bin" "$share/$PATTERN"
run umount2 umount "$mnt"
disconnect disconnect

# Again with header and data digests (CRC32C) and a second I/O queue (a write queue: with one
# CPU the kernel makes one default queue): the file is compared, copied, and the copy compared
# after a remount; the file system is checked before and after.
run connect-digests nvme connect -t tcp -a "$TRADDR" -s "$TRSVCID" -n "$NQN" --hdr-digest --data-digest --nr-write-queues=1
find_dev
ctrl=$(for c in /sys/class/nvme/nvme*; do [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && echo "${c##*/}"; done | head -1)
queues=$(cat "/sys/class/nvme/$ctrl/queue_count" 2>/dev/null)
log "controller $ctrl, $queues queues (admin included), namespace $dev"
run fsck-digests e2fsck -fn "$dev"
run mount-digests mount -t ext4 "$dev" "$mnt"
run compare-digests cmp "$mnt/pattern.bin" "$share/$PATTERN"
run write-digests cp "$mnt/pattern.bin" "$mnt/copy.bin"
run umount-digests umount "$mnt"
run drop-caches-digests sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches; blockdev --flushbufs '"$dev"
run remount-digests mount -t ext4 -o ro "$dev" "$mnt"
run compare-copy cmp "$mnt/copy.bin" "$share/$PATTERN"
run umount-digests2 umount "$mnt"
run fsck-digests2 e2fsck -fn "$dev"
disconnect disconnect-digests
dmesg >"$out/dmesg.txt" 2>&1
step=done
result true ""
