# A → C, whose health check always fails: C gets its boot try (one: BOOT_TRIES), fails it,
# and the host comes back to A by itself. The update agent (fleet-lock)
# staged C and took a slot: the host keeps it, and does not stage C again.
case $(phase) in
0)
	settle
	b=$(booted)
	[ "$b" = "$A" ] && check booted-a ok "$b" || check booted-a fail "booted $b, expected A $A"
	out=$(hull status 2>&1)
	check node-id ok "$(printf '%s\n' "$out" | sed -n 's/^  node id: //p')"
	next_phase 1
	printf 'HULL-CHECK-DONE boot=1\n'
	# One agent run: it finds C, stages it, takes a slot and reboots.
	systemctl start hull-update.service >/dev/null 2>&1
	sleep 120
	check update fail "the agent did not reboot: $(journalctl -b -o cat -u hull-update.service 2>&1 | tail -n 5)"
	exec systemctl reboot
	;;
*)
	b=$(booted)
	if [ "$b" = "$C" ]; then
		# hull-health fails and reboots this try; nothing to do but say so.
		check trial-boot-c ok "$(cat /proc/cmdline)"
		exit 0
	fi
	# Before anything settles (hull-health may not have run yet), the host
	# already reports what the boot loader did: hull-reconcile.service made
	# the rollback permanent before sysinit.target.
	out=$(hull status 2>&1)
	if contains "$out" "last boot was an automatic rollback from 3.0.0 ($C)" &&
		contains "$out" "* 1.0.0 $A.0 [booted, default, next boot] good"; then
		check early-status ok "$(printf '%s\n' "$out" | tr '\n' ' ')"
	else
		check early-status fail "$out"
	fi
	r=$(journalctl -b -o cat -u hull-reconcile.service 2>&1 | tail -n 3)
	expect reconciled-early "$r" contains "$r" "rolled back from 3.0.0 ($C)"
	settle
	[ "$b" = "$A" ] && check back-on-a ok "$b" || check back-on-a fail "booted $b, expected A $A"
	out=$(hull status 2>&1)
	expect rollback-reported "$out" contains "$out" "last boot was an automatic rollback from 3.0.0 ($C)"
	expect rollback-reason "$out" contains "$out" "50-always-fails"
	expect c-failed "$out" contains "$out" "3.0.0 $C.0 [] failed: used all 1 boot try"
	expect a-default "$out" contains "$out" "* 1.0.0 $A.0 [booted, default, next boot] good"
	e=$(entries)
	expect esp-exhausted "$e" contains "$e" "-$C-0+0-1.conf"
	expect update "$out" contains "$out" "last run: staged 3.0.0 ($C); took a FleetLock slot of group default from http://10.0.2.101; rebooting into it"
	expect lock-kept "$out" contains "$out" "  fleet lock: held (group default)"
	m=$(cat /var/lib/prometheus/node-exporter/hull.prom 2>&1)
	expect metrics-rollbacks "$m" contains "$m" "hull_rollbacks_total 1"
	expect metrics-lock-held "$m" contains "$m" "hull_fleet_lock_held 1"
	systemctl start hull-update.service >/dev/null 2>&1
	r=$(journalctl -b -o cat -u hull-update.service 2>&1 | grep -F 'not staging' | tail -n 1)
	expect c-not-again "$r" contains "$r" "not staging 3.0.0 ($C): it failed its health check on this host"
	# A fails its health check too: it is not on trial, so no reboot; the
	# host stays up and says that both failed.
	mkdir -p /etc/hull/health.d
	printf '#!/bin/sh\necho "A is broken too" >&2\nexit 1\n' >/etc/hull/health.d/90-a-broken
	chmod 755 /etc/hull/health.d/90-a-broken
	systemctl restart hull-health.service >/dev/null 2>&1
	sleep 5
	s=$(systemctl is-system-running 2>&1)
	out=$(hull status 2>&1)
	expect both-failed "$out" contains "$out" "both deployments failed"
	expect no-reboot-loop "system is $s" test "$s" = degraded
	rm -f /etc/hull/health.d/90-a-broken
	printf 'HULL-CHECK-DONE boot=2\n'
	exec systemctl poweroff
	;;
esac
