# A → B → rollback to A, three boots of one QEMU process (guest disk on a
# snapshot that lives as long as QEMU).
case $(phase) in
0)
	settle
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
	out=$(hull status 2>&1)
	expect status-pending "$out" contains "$out" "2.0.0 $B.0 [default, next boot] on trial, 2 boot tries left"
	e=$(entries)
	expect esp-entries "$e" contains "$e" "-$B-0+2.conf"
	next_phase 1
	printf 'HULL-CHECK-DONE boot=1\n'
	exec systemctl reboot
	;;
1)
	settle
	b=$(booted)
	[ "$b" = "$B" ] && check booted-b ok "$b" || check booted-b fail "booted $b, expected B $B"
	expect new-usr "$(cat /usr/lib/hull-test/marker 2>&1)" test -f /usr/lib/hull-test/marker
	expect etc-merged "$(grep hull-probe /etc/motd 2>&1)" grep -qF "$(cat "$STATE/probe")" /etc/motd
	out=$(hull status 2>&1)
	expect blessed "$out" contains "$out" "* 2.0.0 $B.0 [booted, default, next boot] good"
	e=$(entries)
	expect esp-blessed "$e" contains "$e" "-$B-0.conf"
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
	printf 'HULL-CHECK-DONE boot=3\n'
	exec systemctl poweroff
	;;
esac
