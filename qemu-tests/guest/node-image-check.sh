#!/bin/sh
# One node booted from the qcow2 of the minimal image on a 10 GiB disk with
# a system extension in /var/lib/extensions (tests/node_image.rs). Checks:
# the root partition and its ext4 grew to the disk (the harness compares the
# sizes printed here), the backup GPT header is at the disk's last sector, the
# ESP kept its size, systemd-sysext merged the extension at boot and its
# binary runs from the read-only /usr.
#
# Each check prints one line, `HULL-CHECK <name> ok|fail <detail>`; nothing
# exits early. `HULL-CHECK-DONE boot=1` ends the boot.

export LC_ALL=C

root_dev=$(findmnt -n -v -o SOURCE /sysroot 2>/dev/null || findmnt -n -v -o SOURCE / 2>/dev/null)
disk=/dev/$(lsblk -n -o PKNAME "$root_dev" 2>/dev/null | head -n 1)
disk_bytes=$(blockdev --getsize64 "$disk" 2>&1)
check disk-size ok "$disk_bytes"

# The ext4 at / (OSTree's deployment, on the root partition) as df sees it.
root_fs=$(df -B1 --output=size / 2>&1 | tail -n 1 | tr -d ' ')
check root-fs-size ok "$root_fs"
root_part=$(blockdev --getsize64 "$root_dev" 2>&1)
check root-part-size ok "$root_part"

esp=$(blockdev --getsize64 /dev/disk/by-label/HULL-ESP 2>&1)
check esp-size ok "$esp"

for u in systemd-repart.service systemd-growfs-root.service systemd-sysext.service; do
	r=$(systemctl show -P Result "$u" 2>&1)
	a=$(systemctl is-active "$u" 2>&1)
	if [ "$r" = success ] && [ "$a" = active ]; then
		check "unit-$u" ok "$a $r"
	else
		check "unit-$u" fail "$a $r: $(journalctl -b -u "$u" -o cat 2>&1 | tail -n 5)"
	fi
done

# The primary GPT header is LBA 1; its AlternateLBA field (offset 32) names
# where the backup header is: the disk's last 512-byte sector.
sectors=$((disk_bytes / 512))
alt=$(dd if="$disk" bs=512 skip=1 count=1 2>/dev/null | od -An -tu8 -j32 -N8 | tr -d ' ')
backup_sig=$(dd if="$disk" bs=512 skip=$((sectors - 1)) count=1 2>/dev/null | head -c 8)
if [ "$alt" = "$((sectors - 1))" ] && [ "$backup_sig" = "EFI PART" ]; then
	check gpt-backup-at-end ok "alternate LBA $alt of $sectors sectors"
else
	check gpt-backup-at-end fail "alternate LBA $alt, last sector starts with '$backup_sig', $sectors sectors"
fi

status=$(systemd-sysext status 2>&1)
echo "$status" | grep -q hello
pass sysext-merged $? "$status"

out=$(hello 2>&1)
where=$(command -v hello 2>&1)
[ "$out" = "Hello, world!" ] && [ "$where" = /usr/bin/hello ]
pass sysext-binary-runs $? "$where: $out"

touch /usr/hull-write-test 2>/dev/null
rc=$?
rm -f /usr/hull-write-test 2>/dev/null
[ "$rc" -ne 0 ]
pass usr-still-readonly $? "touch /usr exit $rc"

echo "HULL-CHECK-DONE boot=1"
systemctl poweroff
