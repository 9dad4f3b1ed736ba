#!/bin/bash
# PID 1 of the test VM once its root exists (init.sh hands over here). It makes the guest look like
# a cgroup v2 host, runs each suite of the plan with `bun test`, leaves the results in the run
# folder the host shares (/run/nsrun-vm) and powers the VM off. Its output is the VM's console.
set -u
ctl=/run/nsrun-vm
# shellcheck source=/dev/null
. "$ctl/guest.env"

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/hvc0 2>&1
# What udev would add: /dev/stdin and friends (nsrun doctor's probes read their config from /dev/stdin).
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
# As systemd mounts it: nsdelegate makes cgroup namespaces delegation boundaries.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
hostname nsrun-vm
ip link set lo up

power_off() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 5
	echo b >/proc/sysrq-trigger # qemu runs with -no-reboot: a reset ends it too
}

# Swap for the memory_swap tests, prepared but off: with swap on, a box at its memory limit swaps
# instead of being OOM-killed, and the memory tests want the kernel's default of no swap.
if [ -e /sys/block/zram0 ]; then
	echo lzo-rle >/sys/block/zram0/comp_algorithm 2>/dev/null
	echo 1G >/sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && export NSRUN_VM_SWAP=/dev/zram0
fi

export NSRUN_VM=1 HOME=/root LANG=C.UTF-8
export PATH="$NSRUN_VM_REPO/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
cd "$NSRUN_VM_REPO" || { echo "guest: no $NSRUN_VM_REPO"; power_off; }
# The binary under test, if not the work tree's own: the copy lands in the guest's overlay only.
if [ -n "$NSRUN_VM_DIST" ] && ! [ "$NSRUN_VM_DIST" -ef dist/nsrun ]; then
	mkdir -p dist && cp "$NSRUN_VM_DIST" dist/nsrun
fi

echo "guest: Linux $(uname -r), $(nproc) CPU(s), $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB," \
	"cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)${NSRUN_VM_SWAP:+, swap device $NSRUN_VM_SWAP}"

if [ -s "$ctl/command" ]; then
	bash "$ctl/command"
	echo $? >"$ctl/command.status"
fi

while IFS=$'\t' read -r id path filter; do
	echo
	echo "guest: bun test $path${filter:+ -t '$filter'}"
	args=(--timeout "$NSRUN_VM_TEST_TIMEOUT_MS" --reporter=junit --reporter-outfile="$ctl/$id.xml" "./$path")
	[ -n "$filter" ] && args+=(-t "$filter")
	start=$(date +%s)
	bun test "${args[@]}"
	echo "$? $(($(date +%s) - start))" >"$ctl/$id.status"
done <"$ctl/suites.tsv"

echo done >"$ctl/finished"
power_off
