# One boot of A: every spoiled update is refused and leaves the host as it
# was; so does an update that would not fit on the ESP, one run by a user
# who is not root, and one whose /etc changes cannot be merged, until the
# local fix (then it deploys without downloading again).
settle
before_entries=$(entries)
before_count=$(deployments)
conf=/etc/ostree/remotes.d/hull.conf
use_repo() {
	sed -i "s#^url=.*#url=http://10.0.2.100/$1#" "$conf"
}
unchanged() {
	[ "$(deployments)" = "$before_count" ] && [ "$(entries)" = "$before_entries" ] && [ "$(booted)" = "$A" ]
}

out=$(setpriv --reuid=65534 --regid=65534 --clear-groups hull update 2>&1)
rc=$?
if [ $rc -ne 0 ] && contains "$out" "hull update needs root" && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then
	check refused-non-root ok "$out"
else
	check refused-non-root fail "exit $rc: $out"
fi

for kind in unsigned wrongkey corrupt misref misarch downgrade stale unsigned-summary; do
	use_repo "$kind/repo"
	out=$(hull update 2>&1)
	rc=$?
	case $kind in
	unsigned) want="is not signed" ;;
	wrongkey) want="none by the 1 trusted key" ;;
	corrupt) want="pulling" ;;
	misref) want="is bound to hull/k8s-node/x86_64/stable, not to" ;;
	misarch) want="is built for aarch64, and this host is x86_64" ;;
	downgrade) want="older than the booted commit" ;;
	stale) want="is stale since" ;;
	unsigned-summary) want="summary is not signed" ;;
	esac
	after="deployments $(deployments), entries $(entries)"
	if [ $rc -ne 0 ] && contains "$out" "$want" && unchanged; then
		check "refused-$kind" ok "$out"
	else
		check "refused-$kind" fail "exit $rc: $out; $after"
	fi
	if [ "$kind" = stale ]; then
		# The freeze shows in --check and in hull status too, each failing.
		out=$(hull update --check 2>&1)
		rc=$?
		st=$(hull status 2>&1)
		src=$?
		if [ $rc -ne 0 ] && contains "$out" "stale since" && [ $src -ne 0 ] && contains "$st" "stale since"; then
			check stale-reported ok "$out | $(printf '%s\n' "$st" | tail -n 2 | tr '\n' ' ')"
		else
			check stale-reported fail "check exit $rc: $out | status exit $src: $st"
		fi
	fi
done
use_repo repo

# Fill the ESP but for 1 MiB: B's kernel and initramfs cannot fit.
free=$(df -B1 --output=avail /efi | tail -n 1)
fallocate -l $((free - 1048576)) /efi/hull-fill 2>/dev/null || dd if=/dev/zero of=/efi/hull-fill bs=1M count=$((free / 1048576 - 1)) 2>/dev/null
out=$(hull update 2>&1)
rc=$?
rm -f /efi/hull-fill
if [ $rc -ne 0 ] && contains "$out" "not enough space on /efi" && unchanged; then
	check refused-esp-full ok "$out"
else
	check refused-esp-full fail "exit $rc: $out"
fi
out=$(hull update --check 2>&1)
expect good-still-available "$out" contains "$out" "update available: 2.0.0 ($B)"
out=$(hull status 2>&1)
rc=$?
expect nothing-staged "$out" test "$(deployments)" = 1 -a $rc -eq 0

# /etc/issue.net edited here; the next version makes it a directory.
echo "edited on this host" >>/etc/issue.net
use_repo etc-conflict/repo
out=$(hull update 2>&1)
rc=$?
err=$(printf '%s\n' "$out" | grep '^error:')
if [ $rc -ne 0 ] && contains "$err" "/etc/issue.net is a file changed locally, and the new version makes it a directory" &&
	[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && unchanged; then
	check refused-etc-conflict ok "$out"
else
	check refused-etc-conflict fail "exit $rc: $out; deployments $(deployments), entries $(entries)"
fi
cp -p /usr/etc/issue.net /etc/issue.net
out=$(hull update 2>&1)
rc=$?
if [ $rc -eq 0 ] && contains "$out" "deployed 2.0.5" && [ "$(deployments)" = 2 ]; then
	check etc-fixed-retry ok "$out"
else
	check etc-fixed-retry fail "exit $rc: $out"
fi
printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
