# Put in front of every check script by the test harness (guest::with_check_lib):
# the one way a script reports to the host's console parser.

# check NAME ok|fail DETAIL...: one `HULL-CHECK` line, whatever the detail
# holds (tabs and newlines folded, unprintable bytes dropped, 400 characters:
# of a longer failure, its first 150 and last 240, where a command's error
# is). sh has no locals: the variables are prefixed so that they do not
# overwrite the caller's (a script's own $status, say).
check() {
	_check_name=$1
	_check_status=$2
	shift 2
	_check_detail=$(printf '%s' "$*" | tr '\t\r\n' '   ' | tr -cd '[:print:]')
	if [ "${#_check_detail}" -le 400 ]; then
		:
	elif [ "$_check_status" = fail ]; then
		_check_detail="$(printf '%s' "$_check_detail" | cut -c1-150) ... $(printf '%s' "$_check_detail" | cut -c$((${#_check_detail} - 239))-)"
	else
		_check_detail=$(printf '%s' "$_check_detail" | cut -c1-400)
	fi
	printf 'HULL-CHECK %s %s %s\n' "$_check_name" "$_check_status" "${_check_detail:--}"
}

# pass NAME CONDITION-EXIT-STATUS DETAIL: ok when the status is 0.
pass() {
	if [ "$2" -eq 0 ]; then check "$1" ok "$3"; else check "$1" fail "$3"; fi
}

# esp_repair_check [PATTERN]: the check `esp-repair`, ok when
# hull-esp-repair.service ran and succeeded and the line `hull esp-repair`
# printed (what it repaired, if anything: the detail) matches the shell
# pattern PATTERN (default: any).
esp_repair_check() {
	_u=hull-esp-repair.service
	_state="$(systemctl show -P ActiveState "$_u" 2>&1) $(systemctl show -P Result "$_u" 2>&1)"
	_said=$(journalctl -b -q -o cat -u "$_u" --no-pager 2>&1 | grep -e 'nothing to repair' -e 'repaired ' | tail -n 1)
	case "$_state" in
	"active success")
		# shellcheck disable=SC2254 # $1 is a pattern on purpose
		case "$_said" in
		${1:-*}) check esp-repair ok "$_said"; return ;;
		esac ;;
	esac
	check esp-repair fail "$_u: $_state $_said"
}

# sysctl_get NAME: the value under /proc/sys (procps' sysctl may not be installed).
sysctl_get() { tr -s ' \t' ' ' 2>/dev/null <"/proc/sys/$(printf '%s' "$1" | tr . /)"; }

# The boot's time to multi-user.target (which every hull image boots to),
# from systemd-analyze, as the check `boot-time` once the boot has finished (every boot test's log shows it; the
# harness also gathers them in boot-times.tsv). In the background, so a
# script's own checks do not wait for it. Only as hull-check.service (its
# credentials directory is set) on a systemd-booted guest: the harness's own
# unit tests run these scripts on the build machine.
if [ -n "${CREDENTIALS_DIRECTORY:-}" ] && [ -d /run/systemd/system ]; then
	(
		systemctl is-system-running --wait >/dev/null 2>&1
		# Every hull image boots to multi-user.target (no graphical session).
		_boot_target=$(systemctl get-default 2>&1)
		if _boot_time=$(systemd-analyze time 2>&1) && [ "$_boot_target" = multi-user.target ]; then
			check boot-time ok "$_boot_time"
		else
			check boot-time fail "default target $_boot_target; systemd-analyze time: $_boot_time"
		fi
	) &
fi
