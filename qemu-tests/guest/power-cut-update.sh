# Power-cut test, first run: start `hull update` with its progress on the
# console; the harness kills QEMU when a chosen stage begins.
settle
b=$(booted)
[ "$b" = "$A" ] && check booted-a ok "$b" || check booted-a fail "booted $b, expected A $A"
# What hull-esp-repair.service cleared before the ESP was mounted (the test
# tears one disk's ESP before this boot).
esp_repair_check
printf 'HULL-CHECK-DONE boot=1\n'
hull update
check update-finished ok "the update ran to its end before the cut"
exec systemctl poweroff
