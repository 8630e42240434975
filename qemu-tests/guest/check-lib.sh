# Put in front of every check script by the test harness (guest::with_check_lib):
# the one way a script reports to the host's console parser.

# check NAME ok|fail DETAIL...: one `HULL-CHECK` line, whatever the detail
# holds (tabs and newlines folded, unprintable bytes dropped, 400 characters).
# sh has no locals: the variables are prefixed so that they do not overwrite
# the caller's (a script's own $status, say).
check() {
	_check_name=$1
	_check_status=$2
	shift 2
	_check_detail=$(printf '%s' "$*" | tr '\t\r\n' '   ' | tr -cd '[:print:]' | cut -c1-400)
	printf 'HULL-CHECK %s %s %s\n' "$_check_name" "$_check_status" "${_check_detail:--}"
}

# pass NAME CONDITION-EXIT-STATUS DETAIL: ok when the status is 0.
pass() {
	if [ "$2" -eq 0 ]; then check "$1" ok "$3"; else check "$1" fail "$3"; fi
}

# sysctl_get NAME: the value under /proc/sys (procps' sysctl may not be installed).
sysctl_get() { tr -s ' \t' ' ' 2>/dev/null <"/proc/sys/$(printf '%s' "$1" | tr . /)"; }
