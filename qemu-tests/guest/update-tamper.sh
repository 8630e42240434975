# One boot of A: every spoiled update is refused and leaves the host as it
# was; so does an update that would not fit on the ESP.
settle
before_entries=$(entries)
before_count=$(deployments)
conf=/etc/ostree/remotes.d/hull.conf
for kind in unsigned wrongkey corrupt; do
	sed -i "s#^url=.*#url=http://10.0.2.100/$kind/repo#" "$conf"
	out=$(hull update 2>&1)
	rc=$?
	case $kind in
	unsigned) want="is not signed" ;;
	wrongkey) want="none by the 1 trusted key" ;;
	corrupt) want="pulling" ;;
	esac
	after="deployments $(deployments), entries $(entries)"
	if [ $rc -ne 0 ] && contains "$out" "$want" && [ "$(deployments)" = "$before_count" ] &&
		[ "$(entries)" = "$before_entries" ] && [ "$(booted)" = "$A" ]; then
		check "refused-$kind" ok "$out"
	else
		check "refused-$kind" fail "exit $rc: $out; $after"
	fi
done
sed -i "s#^url=.*#url=http://10.0.2.100/repo#" "$conf"
# Fill the ESP but for 1 MiB: B's kernel and initramfs cannot fit.
free=$(df -B1 --output=avail /efi | tail -n 1)
fallocate -l $((free - 1048576)) /efi/hull-fill 2>/dev/null || dd if=/dev/zero of=/efi/hull-fill bs=1M count=$((free / 1048576 - 1)) 2>/dev/null
out=$(hull update 2>&1)
rc=$?
rm -f /efi/hull-fill
if [ $rc -ne 0 ] && contains "$out" "not enough space on /efi" && [ "$(deployments)" = "$before_count" ] &&
	[ "$(entries)" = "$before_entries" ]; then
	check refused-esp-full ok "$out"
else
	check refused-esp-full fail "exit $rc: $out"
fi
out=$(hull update --check 2>&1)
expect good-still-available "$out" contains "$out" "update available: 2.0.0 ($B)"
out=$(hull status 2>&1)
expect nothing-staged "$out" test "$(deployments)" = 1
printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
