# Shared by the update checks; the test puts A=, B=, C= (commit checksums)
# and this file in front of each script.
export LC_ALL=C
# HULL_CHECK_ROOT: as in boot-check.sh, for the harness's own test off the guest.
STATE=${HULL_CHECK_ROOT:-}/var/lib/hull-check
mkdir -p "$STATE"

# expect NAME CONDITION-COMMAND DETAIL: ok when the command succeeds.
expect() {
	name=$1
	shift
	detail=$1
	shift
	if "$@" >/dev/null 2>&1; then
		check "$name" ok "$detail"
	else
		check "$name" fail "$detail"
	fi
}

# The booted deployment's commit, from OSTree.
booted() {
	ostree admin status 2>/dev/null |
		sed -n 's/^\* [^ ][^ ]* \([0-9a-f]\{64\}\)\.[0-9][0-9]*.*$/\1/p' | head -n 1
}

# Number of deployments OSTree lists.
deployments() {
	ostree admin status 2>/dev/null | grep -c '^[* ] [^ ]* [0-9a-f]\{64\}\.'
}

entries() {
	ls /efi/loader/entries 2>&1 | tr '\n' ' '
}

phase() {
	cat "$STATE/phase" 2>/dev/null || echo 0
}

next_phase() {
	printf '%s\n' "$1" >"$STATE/phase"
	sync
}

# Hooks for the checks a test adds to A's first and second boot (the
# image's own boot checks: guest::update_script_with_boot_checks); a
# later definition replaces these.
first_boot_checks() { :; }
second_boot_checks() { :; }

# Waits (bounded) for the boot to settle: hull-health has run by then.
settle() {
	timeout 300 systemctl is-system-running --wait >/dev/null 2>&1
	systemctl is-active hull-health.service >/dev/null 2>&1 ||
		check hull-health-unit fail "$(systemctl status hull-health.service 2>&1 | tail -n 5)"
}

contains() {
	case "$1" in
	*"$2"*) return 0 ;;
	*) return 1 ;;
	esac
}
