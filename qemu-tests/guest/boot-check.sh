#!/bin/sh
# The minimal image's boot checks, run by hull-check.service on the console.
#
# First boot (no /var/lib/hull-check/boot1): OSTree booted the deployment,
# /usr is read-only, /etc is writable, podman runs, no unit failed, the ESP
# was fsck'd clean before /efi was mounted, the kernel command line names
# the deployment; then a token goes to /var and the guest
# reboots. Second boot: the token is still there; then the guest powers off.
#
# Each check prints one line, `HULL-CHECK <name> ok|fail <detail>`, and every
# check runs whatever the others found: no `set -e`, nothing exits early.
# `HULL-CHECK-DONE boot=<n>` ends each boot.
#
# With BOOT_CHECK_LIB=1 set in front, it only defines its checks as
# functions (boot_checks, var_write, var_persists) for another script to
# call: the update tests run them on the first two boots of image A, the
# minimal image made updatable (tests/updates.rs, tests/aarch64.rs).

export LC_ALL=C
# HULL_CHECK_ROOT is for the harness's own test of this script, off the guest;
# in the guest it is unset and every path is the real one.
ROOT=${HULL_CHECK_ROOT:-}
STATE=$ROOT/var/lib/hull-check
TOKEN=$STATE/boot1

# The checks every image's first boot must pass.
boot_checks() {
	if [ -e "$ROOT/run/ostree-booted" ]; then
		check ostree-booted ok /run/ostree-booted exists
	else
		check ostree-booted fail /run/ostree-booted is missing
	fi

	# The booted deployment is the line starting with `* `:
	#   * <osname> <checksum>.<serial>[ (...)]
	status=$(ostree admin status 2>&1)
	rc=$?
	booted=$(printf '%s\n' "$status" |
		sed -n 's/^\* [^ ][^ ]* \([0-9a-f]\{64\}\)\.[0-9][0-9]*.*$/\1/p' | head -n 1)
	if [ "$rc" -eq 0 ] && [ -n "$booted" ]; then
		check deployment ok "$booted"
	else
		check deployment fail "ostree admin status (exit $rc): $status"
	fi

	if out=$(touch "$ROOT/usr/hull-probe" 2>&1); then
		rm -f "$ROOT/usr/hull-probe"
		check usr-readonly fail touch /usr/hull-probe succeeded
	else
		check usr-readonly ok "$out"
	fi

	if out=$( { printf 'hull\n' >"$ROOT/etc/hull-probe"; } 2>&1) &&
		[ "$(cat "$ROOT/etc/hull-probe" 2>/dev/null)" = hull ]; then
		rm -f "$ROOT/etc/hull-probe"
		check etc-writable ok wrote and read back /etc/hull-probe
	else
		check etc-writable fail "writing /etc/hull-probe: $out"
	fi

	if out=$(podman --version 2>&1); then
		check podman ok "$out"
	else
		check podman fail "podman --version (exit $?): $out"
	fi

	# Wait for the boot to finish (bounded), then list what failed.
	state=$(timeout 300 systemctl is-system-running --wait 2>&1)
	failed=$(systemctl --failed --no-legend --plain 2>&1 | sed 's/ .*//' | tr '\n' ' ')
	if [ -z "$failed" ]; then
		check failed-units ok "system is $state"
	else
		check failed-units fail "system is $state; failed: $failed"
	fi

	# systemd-fsck checked the ESP before efi.mount (fsck.fat -a), and
	# found nothing to repair: the FAT hull wrote is standard.
	u='systemd-fsck@dev-disk-by\x2dlabel-HULL\x2dESP.service'
	fsck=
	for p in ActiveState Result ExecMainStatus ExecMainExitTimestampMonotonic; do
		fsck="$fsck$(systemctl show -P "$p" "$u" 2>&1) "
	done
	log=$(journalctl -b -q -o cat -u "$u" --no-pager 2>&1)
	summary=$(printf '%s\n' "$log" | grep ' files, ' | tail -n 1)
	case "$fsck" in
	"active success 0 "[1-9]*)
		if [ -n "$summary" ] && ! printf '%s\n' "$log" | grep -q 'Filesystem was changed'; then
			check esp-fsck ok "$summary"
		else
			check esp-fsck fail "fsck.fat repaired the ESP or printed no summary: $(printf '%s\n' "$log" | tail -n 8 | tr '\n' ' ')"
		fi ;;
	*) check esp-fsck fail "$u: $fsck(ActiveState Result ExecMainStatus exit time) $(printf '%s\n' "$log" | tail -n 3 | tr '\n' ' ')" ;;
	esac

	# hull-esp-repair ran before that fsck and found nothing half-written:
	# no power cut has touched this ESP.
	esp_repair_check '*nothing to repair*'

	cmdline=$(cat /proc/cmdline)
	case " $cmdline " in
	*" ostree="*) check kernel-cmdline ok "$cmdline" ;;
	*) check kernel-cmdline fail "no ostree= in: $cmdline" ;;
	esac
}

# A token to /var, for var_persists on the next boot; fails when nothing
# can be written there.
var_write() {
	token=$(cat /proc/sys/kernel/random/uuid)
	if out=$( { mkdir -p "$STATE" && printf '%s\n' "$token" >"$TOKEN" && sync; } 2>&1); then
		check var-write ok "$token"
		return 0
	fi
	check var-write fail "writing $TOKEN: $out"
	return 1
}

var_persists() {
	token=$(cat "$TOKEN" 2>&1)
	if [ -n "$token" ]; then
		check var-persists ok "$token"
	else
		check var-persists fail "$TOKEN is empty"
	fi
}

first_boot() {
	boot_checks
	if var_write; then
		printf 'HULL-CHECK-DONE boot=1\n'
		exec systemctl reboot
	fi
	# Nothing can persist: rebooting would only come back to a first boot.
	printf 'HULL-CHECK-DONE boot=1\n'
	exec systemctl poweroff
}

second_boot() {
	var_persists
	printf 'HULL-CHECK-DONE boot=2\n'
	exec systemctl poweroff
}

if [ -n "${BOOT_CHECK_LIB:-}" ]; then
	:
elif [ -e "$TOKEN" ]; then
	second_boot
else
	first_boot
fi
