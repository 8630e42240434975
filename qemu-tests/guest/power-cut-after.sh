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
# systemd-fsck checked (and repaired) the ESP before /efi was mounted, and
# /efi is writable: the update below writes its entries there.
u='systemd-fsck@dev-disk-by\x2dlabel-HULL\x2dESP.service'
fsck="$(systemctl show -P ActiveState "$u" 2>&1) $(systemctl show -P Result "$u" 2>&1)"
opts=$(while read -r _ m _ o _; do [ "$m" = /efi ] && printf '%s' "$o"; done </proc/mounts)
# fsck.fat's own lines (what it repaired, its summary), not systemd's.
log=$(journalctl -b -q -o cat -u "$u" --no-pager 2>&1 |
	grep -v -e '^fsck\.fat [0-9]' -e '^Starting ' -e '^Finished ' -e '^ *$' | head -n 12 | tr '\n' ' ')
case "$fsck /efi $opts" in
"active success /efi rw,"*) check esp-fsck ok "$log" ;;
*) check esp-fsck fail "$u: $fsck; /efi: ${opts:-not mounted}; $log" ;;
esac
# Before that fsck, hull-esp-repair cleared what the cut left half-written
# in the ESP's directories (the detail says what, if anything).
esp_repair_check
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
