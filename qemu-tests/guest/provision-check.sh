#!/bin/sh
# A provisioned node's checks (qemu-tests/tests/provision.rs), run by
# hull-check.service on the console. The harness puts the expectations in
# front of this script as variables:
#   NODE_HOST       the host name the node config gave
#   NODE_USER       the account made, with NODE_KEY_FP the fingerprint of its key
#   NODE_FILE       a file the config wrote, NODE_FILE_TEXT its contents and
#                   NODE_FILE_STAT its `stat -c '%a %U'`
#   NODE_SOURCE     what hull status names as the source (credential hull.node,
#                   NoCloud seed)
#   NODE_STATIC     the static address with prefix, when the config gave one
#   NODE_UNKNOWN    a cloud-config key that is not supported, when there is one
#   NODE_UPDATE     a line /etc/hull/update.toml must hold, when given
#   NODE_SYSEXT     a system extension the config named (NAME; its binary
#                   /usr/bin/NAME prints "Hello, world!"), when given
#   NODE_DISK       set when the node boots on a disk larger than the image:
#                   the sizes of the disk, the root partition, its ext4 and
#                   the ESP are reported (the harness compares them), and
#                   systemd-repart/growfs grew the root, the backup GPT
#                   header moved to the disk's end, /usr stays read-only
# Then it waits (bounded) for the harness to log in over SSH, which leaves
# ~/.harness-ssh-ok behind, and powers off.

export LC_ALL=C

state=$(timeout 300 systemctl is-system-running --wait 2>&1)

result=$(systemctl show -P Result hull-provision.service 2>&1)
active=$(systemctl show -P ActiveState hull-provision.service 2>&1)
if [ "$result" = success ] && [ "$active" = active ]; then
	check provision-unit ok "hull-provision.service $active ($result); system $state"
else
	check provision-unit fail "hull-provision.service $active ($result): $(journalctl -b -u hull-provision.service --no-pager -q 2>&1 | tail -n 5)"
fi

host=$(cat /proc/sys/kernel/hostname)
etc_host=$(cat /etc/hostname 2>&1)
if [ "$host" = "$NODE_HOST" ] && [ "$etc_host" = "$NODE_HOST" ]; then
	check hostname ok "$host"
else
	check hostname fail "kernel: $host, /etc/hostname: $etc_host, expected $NODE_HOST"
fi

home=$(getent passwd "$NODE_USER" | cut -d: -f6)
keys=$home/.ssh/authorized_keys
fp=$(ssh-keygen -lf "$keys" 2>&1 | cut -d' ' -f2)
perms=$(stat -c '%a %U' "$keys" 2>&1)
if [ -n "$home" ] && [ "$fp" = "$NODE_KEY_FP" ] && [ "$perms" = "600 $NODE_USER" ]; then
	check user-key ok "$NODE_USER $(id -u "$NODE_USER") $home $fp $perms"
else
	check user-key fail "user $NODE_USER home '$home' key '$fp' ($perms), expected $NODE_KEY_FP"
fi

text=$(cat "$NODE_FILE" 2>&1)
fstat=$(stat -c '%a %U' "$NODE_FILE" 2>&1)
if [ "$text" = "$NODE_FILE_TEXT" ] && [ "$fstat" = "$NODE_FILE_STAT" ]; then
	check file ok "$NODE_FILE ($fstat): $text"
else
	check file fail "$NODE_FILE ($fstat): '$text', expected '$NODE_FILE_TEXT' ($NODE_FILE_STAT)"
fi

if [ -n "${NODE_STATIC:-}" ]; then
	# networkctl names the .network file that configured the link and its
	# addresses; a DHCP lease would show "(DHCPv4 via ...)". The link is the
	# one NIC (without a name, networkctl prints the system's summary).
	iface=
	for n in /sys/class/net/*; do
		[ "${n##*/}" = lo ] || iface=${n##*/}
	done
	link=$(networkctl status --no-pager -n 0 "$iface" 2>&1)
	if printf '%s\n' "$link" | grep -q "Network File: /etc/systemd/network/10-hull-provision-0.network" &&
		printf '%s\n' "$link" | grep -q "${NODE_STATIC%/*}" &&
		! printf '%s\n' "$link" | grep -q DHCPv4; then
		check static-address ok "$(printf '%s\n' "$link" | grep -E 'Network File|Address|Gateway|DNS' | tr -s ' ' | tr '\n' ';')"
	else
		check static-address fail "$link"
	fi
fi

if [ -n "${NODE_UPDATE:-}" ]; then
	if grep -qxF "$NODE_UPDATE" /etc/hull/update.toml 2>/dev/null; then
		check update-settings ok "$(grep -v '^#' /etc/hull/update.toml | tr '\n' ' ')"
	else
		check update-settings fail "$(cat /etc/hull/update.toml 2>&1)"
	fi
fi

if [ -n "${NODE_SYSEXT:-}" ]; then
	raw=/var/lib/extensions/$NODE_SYSEXT.raw
	placed=$(journalctl -b -u hull-provision.service --no-pager -q -o cat 2>&1 |
		grep "extension $raw (.* bytes, from credential hull.sysext.$NODE_SYSEXT)")
	merged=$(systemd-sysext status 2>&1)
	if [ -s "$raw" ] && [ -n "$placed" ] && printf '%s\n' "$merged" | grep -q "$NODE_SYSEXT"; then
		check sysext-placed ok "$(stat -c '%s bytes %a %U' "$raw"); $placed; $(printf '%s\n' "$merged" | tr -s ' ' | tr '\n' ';')"
	else
		check sysext-placed fail "$(ls -l /var/lib/extensions 2>&1 | tr '\n' ';') journal: $(journalctl -b -u hull-provision.service --no-pager -q -o cat 2>&1 | tail -n 5 | tr '\n' ';') sysext: $merged"
	fi
	out=$("$NODE_SYSEXT" 2>&1)
	where=$(command -v "$NODE_SYSEXT" 2>&1)
	if [ "$out" = "Hello, world!" ] && [ "$where" = "/usr/bin/$NODE_SYSEXT" ]; then
		check sysext-binary-runs ok "$where: $out"
	else
		check sysext-binary-runs fail "$where: $out"
	fi
fi

if [ -n "${NODE_DISK:-}" ]; then
	root_dev=$(findmnt -n -v -o SOURCE /sysroot 2>/dev/null || findmnt -n -v -o SOURCE / 2>/dev/null)
	disk=/dev/$(lsblk -n -o PKNAME "$root_dev" 2>/dev/null | head -n 1)
	disk_bytes=$(blockdev --getsize64 "$disk" 2>&1)
	check disk-size ok "$disk_bytes"
	# The ext4 at / (OSTree's deployment, on the root partition) as df sees it.
	check root-fs-size ok "$(df -B1 --output=size / 2>&1 | tail -n 1 | tr -d ' ')"
	check root-part-size ok "$(blockdev --getsize64 "$root_dev" 2>&1)"
	check esp-size ok "$(blockdev --getsize64 /dev/disk/by-label/HULL-ESP 2>&1)"
	# (Not systemd-sysext.service: on a first boot /var/lib/extensions is
	# still empty when it runs, so it skips; provisioning merges later.)
	for u in systemd-repart.service systemd-growfs-root.service; do
		r=$(systemctl show -P Result "$u" 2>&1)
		a=$(systemctl is-active "$u" 2>&1)
		[ "$r" = success ] && [ "$a" = active ]
		pass "unit-$u" $? "$a $r: $(journalctl -b -u "$u" -o cat 2>&1 | tail -n 3 | tr '\n' ';')"
	done
	# The primary GPT header is LBA 1; its AlternateLBA field (offset 32) names
	# where the backup header is: the disk's last 512-byte sector.
	sectors=$((disk_bytes / 512))
	alt=$(dd if="$disk" bs=512 skip=1 count=1 2>/dev/null | od -An -tu8 -j32 -N8 | tr -d ' ')
	backup_sig=$(dd if="$disk" bs=512 skip=$((sectors - 1)) count=1 2>/dev/null | head -c 8)
	[ "$alt" = "$((sectors - 1))" ] && [ "$backup_sig" = "EFI PART" ]
	pass gpt-backup-at-end $? "alternate LBA $alt of $sectors sectors, last sector starts with '$backup_sig'"
	touch /usr/hull-write-test 2>/dev/null
	rc=$?
	rm -f /usr/hull-write-test 2>/dev/null
	[ "$rc" -ne 0 ]
	pass usr-still-readonly $? "touch /usr exit $rc"
fi

if [ -n "${NODE_UNKNOWN:-}" ]; then
	if journalctl -b -u hull-provision.service --no-pager -q 2>&1 |
		grep -q ": $NODE_UNKNOWN is not supported: not applied"; then
		check unknown-key ok "$NODE_UNKNOWN named in the journal"
	else
		check unknown-key fail "$(journalctl -b -u hull-provision.service --no-pager -q 2>&1 | tail -n 5)"
	fi
fi

status=$(hull status 2>&1)
if printf '%s\n' "$status" | grep -q "^provisioned from $NODE_SOURCE"; then
	check status-provision ok "$(printf '%s\n' "$status" | grep -A1 '^provisioned from')"
else
	check status-provision fail "$status"
fi

if systemctl is-active -q ssh.service; then
	check sshd ok "ssh.service active"
else
	check sshd fail "ssh.service $(systemctl is-active ssh.service 2>&1): $(journalctl -b -u ssh.service --no-pager -q 2>&1 | tail -n 3)"
fi

# The harness logs in with the node's key (and fails with another) now.
check ssh-wait ok "waiting for the harness to log in as $NODE_USER"
i=0
while [ ! -e "$home/.harness-ssh-ok" ] && [ "$i" -lt 300 ]; do
	sleep 1
	i=$((i + 1))
done
if [ -e "$home/.harness-ssh-ok" ]; then
	check ssh-login ok "the harness logged in as $NODE_USER after ${i} s: $(cat "$home/.harness-ssh-ok")"
else
	check ssh-login fail "no SSH login as $NODE_USER within 300 s"
fi
printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
