#!/bin/sh
# PID 1 of spdk-node's test guest (installed as /sbin/spdk-node-guest-init by build-guest.sh; the
# kernel command line says init=/sbin/spdk-node-guest-init). No systemd, no udev: mounts the
# pseudo file systems, brings up QEMU's user-mode network (the host is 10.0.2.2), mounts the
# 9p share tagged "spdknode" that the host passes with -virtfs, runs the share's run.sh with its
# output on the serial console, and powers the machine off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -o remount,rw / 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo "spdk-node-guest: init at $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r)"

for m in virtio_net 9pnet_virtio 9p; do modprobe "$m" || echo "spdk-node-guest: modprobe $m failed"; done
ip link set lo up
# The first interface that is not lo (eth0 without udev's renaming).
ifc=
for i in $(seq 1 50); do
  for n in /sys/class/net/*; do
    n=${n##*/}
    [ "$n" = lo ] || { ifc=$n; break; }
  done
  [ -n "$ifc" ] && break
  sleep 0.1
done
if [ -n "$ifc" ]; then
  ip link set "$ifc" up
  ip addr add 10.0.2.15/24 dev "$ifc"
  ip route add default via 10.0.2.2
else
  echo "spdk-node-guest: no network interface"
fi

mkdir -p /mnt/share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 spdknode /mnt/share; then
  if [ -f /mnt/share/run.sh ]; then
    echo "spdk-node-guest: running run.sh at $(cut -d' ' -f1 /proc/uptime)s"
    sh /mnt/share/run.sh
    echo "spdk-node-guest: run.sh exited with $? at $(cut -d' ' -f1 /proc/uptime)s"
  else
    echo "spdk-node-guest: the share has no run.sh"
  fi
  sync
  umount /mnt/share
else
  echo "spdk-node-guest: no 9p share tagged spdknode"
fi
sync
echo "spdk-node-guest: power off"
echo o > /proc/sysrq-trigger
sleep 30
