#!/bin/sh
# The image built from qemu-tests/fixtures/signed.toml (tests/signed_images.rs):
# [containers.trust] names the test-only key for 10.0.2.100:80/hull, which is
# docker-registry on the build machine, reached only through QEMU's
# restricted guestfwd. The harness pushed four tags of a busybox image there:
# signed with that key, unsigned, signed with another key, and tampered (a
# changed layer carrying the signed image's signature). Checks: the signed one
# pulls and runs; each other is refused by podman (its error line is the
# check's detail, for the log and docs/containers.md); an image from outside
# the trusted scope is refused by the default (reject). Then gVisor: the signed
# image run with `--runtime runsc` sees gVisor's kernel, not the host's.
#
# Each check prints one line, `HULL-CHECK <name> ok|fail <detail>`; nothing
# exits early. `HULL-CHECK-DONE boot=1` ends the boot.

export LC_ALL=C
repo=10.0.2.100:80/hull/busybox

timeout 300 systemctl is-system-running --wait >/dev/null 2>&1
check podman-version ok "$(podman --version 2>&1)"
check trust-policy ok "$(tr -d ' \n' </etc/containers/policy.json 2>&1 | cut -c1-300)"

# The guest's network comes up by DHCP on QEMU's user network.
i=0
until podman_out=$(timeout 20 podman pull -q --tls-verify=false "$repo:unsigned" 2>&1) || [ $i -ge 30 ]; do
	case "$podman_out" in *"no route"* | *"network is unreachable"* | *"connection refused"* | *"i/o timeout"*) ;; *) break ;; esac
	i=$((i + 1))
	sleep 2
done

# refused NAME TAG NEEDLE: podman pull must fail, and say NEEDLE.
refused() {
	out=$(podman pull --tls-verify=false "$repo:$2" 2>&1)
	rc=$?
	line=$(printf '%s\n' "$out" | grep -m1 -i 'error' || printf '%s' "$out" | tail -n 1)
	if [ "$rc" -ne 0 ] && printf '%s' "$out" | grep -q -- "$3"; then
		check "$1" ok "exit $rc: $line"
	else
		check "$1" fail "exit $rc, expected a refusal naming '$3': $out"
	fi
	printf 'podman pull %s:%s -> exit %s\n%s\n' "$repo" "$2" "$rc" "$out" >&2
}

out=$(podman pull --tls-verify=false "$repo:signed" 2>&1)
pass signed-pull $? "$(printf '%s' "$out" | tail -n 1)"
out=$(podman run --rm --network=none "$repo:signed" /bin/busybox cat /hull-tag 2>&1)
case "$out" in signed) check signed-run ok "the signed image ran: /hull-tag says $out" ;; *) check signed-run fail "$out" ;; esac

refused unsigned-refused unsigned 'A signature was required, but no signature exists'
refused other-key-refused other-key 'cryptographic signature verification failed'
refused tampered-refused tampered 'does not match'

# Outside every trusted scope: the default, reject.
out=$(podman pull --tls-verify=false 10.0.2.100:80/elsewhere/busybox:unsigned 2>&1)
rc=$?
case "$out" in
*"rejected by policy"*) check default-reject ok "exit $rc: $(printf '%s' "$out" | grep -m1 -i error)" ;;
*) check default-reject fail "exit $rc: $out" ;;
esac

# gVisor: runsc's own network (netstack) cannot start here (docs/containers.md,
# "Networks"); the runtime flag network=none gives the sandbox none, as
# podman's --network=none gives the container none.
# One sandbox (a runsc start costs 25-40 s under TCG): its kernel version,
# then its boot messages, split by a marker line.
t0=$(date +%s)
both=$(podman --runtime-flag=network=none run --rm --network=none --runtime runsc "$repo:signed" \
	/bin/busybox sh -c '/bin/busybox cat /proc/version; echo HULL-SPLIT; /bin/busybox dmesg' 2>&1)
rc=$?
t1=$(date +%s)
out=$(printf '%s\n' "$both" | sed -n '1,/^HULL-SPLIT$/p' | grep -v '^HULL-SPLIT$')
dmesg_out=$(printf '%s\n' "$both" | sed -n '/^HULL-SPLIT$/,$p' | grep -v '^HULL-SPLIT$')
host=$(cat /proc/version)
# gVisor reports a fixed, old Linux version (4.4.0); the host runs trixie's.
if [ "$rc" -eq 0 ] && [ -n "$out" ] && [ "$out" != "$host" ]; then
	check runsc-kernel ok "$((t1 - t0)) s; inside: $out; host: $host"
else
	check runsc-kernel fail "exit $rc after $((t1 - t0)) s: $both"
fi
# gVisor's own boot messages, not the host kernel's.
case "$dmesg_out" in
*"Starting gVisor"*) check runsc-dmesg ok "$(printf '%s' "$dmesg_out" | head -n 3)" ;;
*) check runsc-dmesg fail "no 'Starting gVisor' in dmesg: $(printf '%s' "$both" | head -n 5)" ;;
esac

echo "HULL-CHECK-DONE boot=1"
systemctl poweroff
