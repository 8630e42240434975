# A → B → rollback to A, three boots of one QEMU process (guest disk on a
# snapshot that lives as long as QEMU). The reboot into B is the update
# agent's (hull-update.service under fleet-lock, its slot taken from the
# server on the host and given back once B is healthy); the last boot runs
# the agent once more under a closed maintenance window (the node's
# /etc/hull/update.toml): it stages B and does not reboot.
case $(phase) in
0)
	settle
	first_boot_checks
	b=$(booted)
	[ "$b" = "$A" ] && check booted-a ok "$b" || check booted-a fail "booted $b, expected A $A"
	out=$(hull status 2>&1)
	expect status-a-good "$out" contains "$out" "* 1.0.0 $A.0 [booted, default, next boot] good"
	echo "hull-probe $(cat /proc/sys/kernel/random/uuid)" >>/etc/motd
	grep hull-probe /etc/motd >"$STATE/probe"
	out=$(hull update --check 2>&1)
	expect update-check "$out" contains "$out" "update available: 2.0.0 ($B)"
	out=$(hull update 2>&1)
	rc=$?
	[ $rc -eq 0 ] && contains "$out" "deployed 2.0.0 ($B)" && check update ok "$out" || check update fail "exit $rc: $out"
	# A → B came through B's static delta: "(fetched N object(s), M delta part(s), …)", M > 0.
	expect update-delta "$out" sh -c 'printf "%s" "$1" | grep -Eq ", [1-9][0-9]* delta part"' _ "$out"
	out=$(hull status 2>&1)
	expect status-pending "$out" contains "$out" "2.0.0 $B.0 [default, next boot] on trial, 1 boot try left"
	e=$(entries)
	expect esp-entries "$e" contains "$e" "-$B-0+1.conf"
	# The agent's timer is on (every week: it does not fire during the test).
	t="$(systemctl is-enabled hull-update.timer 2>&1) $(systemctl is-active hull-update.timer 2>&1)"
	expect agent-timer "$t" test "$t" = "enabled active"
	out=$(hull status 2>&1)
	expect agent-status "$out" contains "$out" "update agent: on, strategy fleet-lock (group default at http://10.0.2.101)"
	expect agent-next-check "$out" contains "$out" "  next check: "
	expect agent-lock-free "$out" contains "$out" "  fleet lock: not held"
	check node-id ok "$(printf '%s\n' "$out" | sed -n 's/^  node id: //p')"
	next_phase 1
	printf 'HULL-CHECK-DONE boot=1\n'
	# One agent run: it finds B, stages it, takes a slot and reboots.
	systemctl start hull-update.service >/dev/null 2>&1
	sleep 120
	check agent-reboot fail "the agent did not reboot: $(journalctl -b -o cat -u hull-update.service 2>&1 | tail -n 5)"
	exec systemctl reboot
	;;
1)
	settle
	second_boot_checks
	b=$(booted)
	[ "$b" = "$B" ] && check booted-b ok "$b" || check booted-b fail "booted $b, expected B $B"
	expect new-usr "$(cat /usr/lib/hull-test/marker 2>&1)" test -f /usr/lib/hull-test/marker
	expect etc-merged "$(grep hull-probe /etc/motd 2>&1)" grep -qF "$(cat "$STATE/probe")" /etc/motd
	out=$(hull status 2>&1)
	expect blessed "$out" contains "$out" "* 2.0.0 $B.0 [booted, default, next boot] good"
	e=$(entries)
	expect esp-blessed "$e" contains "$e" "-$B-0.conf"
	expect agent-took-lock "$out" contains "$out" "last run: staged 2.0.0 ($B); took a FleetLock slot of group default from http://10.0.2.101; rebooting into it"
	expect agent-released "$out" contains "$out" "  fleet lock: not held"
	m=$(cat /var/lib/prometheus/node-exporter/hull.prom 2>&1)
	expect metrics-booted "$m" contains "$m" "hull_booted_info{version=\"2.0.0\",commit=\"$B\"} 1"
	expect metrics-lock "$m" contains "$m" "hull_fleet_lock_held 0"
	out=$(hull rollback 2>&1)
	rc=$?
	[ $rc -eq 0 ] && contains "$out" "the next boot is 1.0.0 ($A)" && check rollback ok "$out" || check rollback fail "exit $rc: $out"
	out=$(hull status 2>&1)
	expect status-rollback-pending "$out" contains "$out" "1.0.0 $A.0 [default, next boot] good"
	next_phase 2
	printf 'HULL-CHECK-DONE boot=2\n'
	exec systemctl reboot
	;;
*)
	settle
	b=$(booted)
	[ "$b" = "$A" ] && check rolled-back ok "$b" || check rolled-back fail "booted $b, expected A $A"
	out=$(hull status 2>&1)
	expect no-auto-rollback "$out" contains "$out" "last boot was not a rollback"
	expect etc-kept "$(grep hull-probe /etc/motd 2>&1)" grep -qF "$(cat "$STATE/probe")" /etc/motd
	# The node's override: a window every day, opening in twelve hours.
	start=$(date -u -d '+12 hours' +%H:%M)
	mkdir -p /etc/hull
	printf 'strategy = "window"\n\n[window]\ndays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\nstart = "%s"\nlength = "1h"\n' "$start" >/etc/hull/update.toml
	systemctl start hull-update.service >/dev/null 2>&1
	r=$(journalctl -b -o cat -u hull-update.service 2>&1 | grep -F 'staged 2.0.0' | tail -n 1)
	expect window-staged "$r" contains "$r" "staged 2.0.0 ($B); not rebooting: outside the maintenance window, which opens at "
	out=$(hull status 2>&1)
	expect window-strategy "$out" contains "$out" "update agent: on, strategy window (mon,tue,wed,thu,fri,sat,sun at $start UTC for 1h)"
	expect window-waiting "$out" contains "$out" "  waiting for: the maintenance window, which opens at "
	expect window-next-boot "$out" contains "$out" "2.0.0 $B.0 [default, next boot]"
	sleep 5
	b=$(booted)
	[ "$b" = "$A" ] && check window-no-reboot ok "up on A after the agent ran" || check window-no-reboot fail "booted $b"
	rm -f /etc/hull/update.toml
	printf 'HULL-CHECK-DONE boot=3\n'
	exec systemctl poweroff
	;;
esac
