# Power-cut test, second run on the same disk: the host came up (on A or B),
# works, and a new `hull update` completes.
settle
b=$(booted)
case $b in
"$A") check bootable ok "A $b" ;;
"$B") check bootable ok "B $b" ;;
*) check bootable fail "booted '$b', neither A nor B" ;;
esac
failed=$(systemctl --failed --no-legend --plain 2>&1 | sed 's/ .*//' | tr '\n' ' ')
[ -z "$failed" ] && check no-failed-units ok "-" || check no-failed-units fail "$failed"
out=$(hull status 2>&1)
rc=$?
[ $rc -eq 0 ] && check status-works ok "$out" || check status-works fail "exit $rc: $out"
out=$(hull update 2>&1)
rc=$?
if [ $rc -eq 0 ] && { contains "$out" "deployed 2.0.0 ($B)" || contains "$out" "up to date: 2.0.0 ($B)"; }; then
	check update-after-cut ok "$out"
else
	check update-after-cut fail "exit $rc: $out"
fi
printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
