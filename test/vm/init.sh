#!/bin/busybox sh
# PID 1 of the test VM's initramfs. It builds the guest's root and hands over to guest.sh:
#   /        the host's / over 9p, read-only, under a tmpfs overlay: the guest can write anywhere
#            (useradd, /tmp) and the host sees none of it
#   /run/nsrun-vm   the run folder the host shares read-write: the test plan in, results out
# Everything runs from busybox: the initramfs has no libc.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs dev /dev
fail() {
	echo "nsrun-vm init: $*" >/dev/ttyS0
	echo o >/proc/sysrq-trigger
	$B sleep 60
}
for m in /lib/modules/*.ko; do
	$B insmod "$m" || fail "insmod $m failed"
done

# msize: the largest 9p message; the default (8K) makes reading the host's files several times slower.
p9="trans=virtio,version=9p2000.L,msize=262144"
$B mount -t 9p -o "$p9,cache=none" ctl /ctl || fail "cannot mount the run folder (9p tag ctl)"
# cache=loose: the host's files do not change while the VM runs, so the guest may cache them.
$B mount -t 9p -o "$p9,ro,cache=loose" hostroot /lower || fail "cannot mount the host's / (9p tag hostroot)"
$B mount -t tmpfs -o mode=755 upper /upper
$B mkdir -p /upper/data /upper/work
$B mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work root /newroot || fail "cannot mount the overlay root"
$B mount -t tmpfs -o mode=755,nosuid,nodev run /newroot/run
$B mkdir -p /newroot/run/nsrun-vm
$B mount --move /ctl /newroot/run/nsrun-vm

. /newroot/run/nsrun-vm/guest.env
$B umount /proc
$B umount /dev
exec $B switch_root /newroot /bin/bash "$NSRUN_VM_REPO/test/vm/guest.sh"
