#!/bin/sh
# The hardening profile's checks (qemu-tests/tests/hardening.rs), run once by
# hull-check.service on the console of a booted minimal image.
#
# Host: no failed unit, the profile's sysctls and kernel arguments are in
# force, /usr is read-only, nothing but loopback listens on TCP, the firewall
# drops inbound, auditd runs with its rules locked, /tmp and /var/tmp are
# nosuid,nodev, sshd is off. Rootless podman: the dedicated account lingers
# with delegated controllers; a container built here from host binaries (no
# registry is reachable) runs as that account, with Seccomp 2, NoNewPrivs 1,
# the reduced capability set and the pids limit; a syscall the seccomp profile
# blocks fails, and succeeds with seccomp off, so seccomp is what blocked it.
# Rootful podman still works, --userns=auto giving it a user namespace.
#
# Prints `HULL-CHECK <name> ok|fail <detail>`, then `HULL-CHECK-DONE boot=1`
# and powers off. Every check runs whatever the others found.

export LC_ALL=C
USER_NAME=${HULL_ROOTLESS_USER:-rootless}
# Ports the manifest opened (space-separated "N/tcp"); none in minimal.toml.
OPEN_PORTS=${HULL_OPEN_PORTS:-}

state=$(timeout 300 systemctl is-system-running --wait 2>&1)
failed=$(systemctl --failed --no-legend --plain 2>&1 | sed 's/ .*//' | tr '\n' ' ')
if [ -z "$failed" ]; then
	check failed-units ok "system is $state"
else
	check failed-units fail "system is $state; failed: $failed"
fi

# --- sysctls: every line of the profile's file (and the overrides after it)
bad=""
n=0
for f in /usr/lib/sysctl.d/60-hull-hardening.conf /usr/lib/sysctl.d/61-hull-overrides.conf; do
	[ -f "$f" ] || continue
	while IFS='=' read -r key want; do
		key=$(echo "$key" | tr -d ' ')
		want=$(echo "$want" | tr -d ' ')
		case "$key" in '' | '#'*) continue ;; esac
		# The overrides file, read later, decides.
		if [ "$f" != /usr/lib/sysctl.d/61-hull-overrides.conf ] &&
			grep -q "^$key *=" /usr/lib/sysctl.d/61-hull-overrides.conf 2>/dev/null; then
			continue
		fi
		got=$(sysctl_get "$key")
		n=$((n + 1))
		[ "$got" = "$want" ] || bad="$bad $key=$got(want $want)"
	done <"$f"
done
if [ "$n" -gt 0 ] && [ -z "$bad" ]; then
	check sysctls ok "$n sysctls as the profile says"
else
	check sysctls fail "$n checked; wrong:$bad"
fi

# --- kernel command line
cmdline=$(cat /proc/cmdline)
missing=""
for a in slab_nomerge init_on_alloc=1 init_on_free=1 page_alloc.shuffle=1 randomize_kstack_offset=on \
	vsyscall=none debugfs=off pti=on lockdown=integrity module.sig_enforce=1 mitigations=auto,nosmt \
	oops=panic ia32_emulation=0 audit=1; do
	case " $cmdline " in *" $a "*) ;; *) missing="$missing $a" ;; esac
done
unknown=$(dmesg 2>/dev/null | sed -n 's/.*Unknown kernel command line parameters "\(.*\)", will be passed.*/\1/p')
pass kernel-cmdline "$([ -z "$missing" ]; echo $?)" "missing:${missing:- none}; unknown to the kernel: ${unknown:-none}"

lockdown=$(cat /sys/kernel/security/lockdown 2>&1)
case "$lockdown" in *"[integrity]"*) check lockdown ok "$lockdown" ;; *) check lockdown fail "$lockdown" ;; esac

# --- host file system
if out=$(touch /usr/hull-probe 2>&1); then
	rm -f /usr/hull-probe
	check usr-readonly fail touch /usr/hull-probe succeeded
else
	check usr-readonly ok "$out"
fi
for m in /tmp /var/tmp; do
	opts=$(findmnt -n -o OPTIONS --target "$m" 2>&1)
	case ",$opts," in
	*,nosuid,*nodev,* | *,nodev,*nosuid,*) check "mount-$(echo "${m#/}" | tr / -)" ok "$m: $opts" ;;
	*) check "mount-$(echo "${m#/}" | tr / -)" fail "$m: $opts" ;;
	esac
done

# --- listening sockets: only loopback, or a port the manifest opened
# /proc/net/tcp{,6}: local address hex:port, state 0A is LISTEN.
listen=$(awk 'FNR > 1 && $4 == "0A" { print $2 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
exposed=""
all=""
for la in $listen; do
	addr=${la%:*}
	port=$((0x${la##*:}))
	all="$all $port"
	case "$addr" in
	0100007F | 00000000000000000000000001000000) continue ;; # 127.0.0.1, ::1
	esac
	case " $OPEN_PORTS " in *" $port/tcp "*) continue ;; esac
	exposed="$exposed $port"
done
pass tcp-listeners "$([ -z "$exposed" ]; echo $?)" "listening:${all:- none}; exposed beyond the opened ports:${exposed:- none}"

ruleset=$(nft list chain inet hull input 2>&1)
case "$ruleset" in
*"policy drop"*) check firewall ok "$(systemctl is-active nftables.service): input policy drop" ;;
*) check firewall fail "$ruleset; nftables.service: $(journalctl -b -u nftables.service -o cat --no-pager 2>&1 | tail -n 5)" ;;
esac

# --- audit
audit_status=$(auditctl -s 2>&1)
rules=$(auditctl -l 2>&1 | grep -c -e '^-w' -e '^-a')
case "$audit_status" in
*"enabled 2"*) pass audit "$([ "$rules" -gt 5 ]; echo $?)" "auditd $(systemctl is-active auditd.service), $rules rules, locked (enabled 2)" ;;
*) check audit fail "auditd $(systemctl is-active auditd.service): $audit_status" ;;
esac

sshd=$(systemctl is-enabled ssh.service 2>&1)
case "$sshd" in enabled) check sshd-off fail "ssh.service is $sshd without keys" ;; *) check sshd-off ok "ssh.service $sshd" ;; esac

# --- fewer units: what prune-units and the ssh item disable stays off
enabled=""
for u in e2scrub_all.timer e2scrub_reap.service netavark-dhcp-proxy.socket netavark-dhcp-proxy.service \
	netavark-firewalld-reload.service sshd-keygen.service; do
	case "$(systemctl is-enabled "$u" 2>/dev/null)" in enabled*) enabled="$enabled $u" ;; esac
done
pass pruned-units "$([ -z "$enabled" ]; echo $?)" "enabled services: $(systemctl list-unit-files --type=service --state=enabled --no-legend --plain | wc -l); enabled of the pruned:${enabled:- none}"

# --- sandboxing drop-ins: each service's systemd-analyze exposure is low,
# and the service did its job (the firewall, audit and AppArmor checks).
exposures=""
worst=0
for u in apparmor auditd audit-rules nftables systemd-networkd-wait-online; do
	e=$(systemd-analyze security --no-pager "$u.service" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	exposures="$exposures $u=${e:-?}"
	# Tenths, as integers: sh has no floating point.
	t=$(echo "${e:-10.0}" | tr -d .)
	[ "$t" -gt "$worst" ] && worst=$t
done
loaded=$(cat /sys/kernel/security/apparmor/profiles 2>/dev/null | wc -l)
pass sandboxed "$([ "$worst" -le 50 ] && [ "$loaded" -gt 0 ]; echo $?)" "exposure:$exposures; AppArmor profiles loaded: $loaded"

# --- the rootless account
uid=$(id -u "$USER_NAME" 2>/dev/null)
if [ -z "$uid" ]; then
	check rootless-user fail "no account $USER_NAME"
	uid=0
else
	linger=$([ -e "/var/lib/systemd/linger/$USER_NAME" ] && echo yes || echo no)
	subuid=$(grep "^$USER_NAME:" /etc/subuid | tr '\n' ' ')
	mgr=$(systemctl is-active "user@$uid.service" 2>&1)
	ctl=$(cat "/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service/cgroup.controllers" 2>&1)
	ok=0
	[ "$uid" -ge 1000 ] && [ "$linger" = yes ] && [ -n "$subuid" ] && [ "$mgr" = active ] || ok=1
	for c in cpu io memory pids; do case " $ctl " in *" $c "*) ;; *) ok=1 ;; esac; done
	pass rootless-user "$ok" "uid $uid, linger $linger, subuid $subuid, user@$uid $mgr, delegated: $ctl"
fi

# as_user CMD...: a command as the rootless account, in its user session.
as_user() {
	(cd / && runuser -u "$USER_NAME" -- env HOME="/home/$USER_NAME" XDG_RUNTIME_DIR="/run/user/$uid" \
		DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@")
}

# A container image from host binaries: no registry is reachable.
img=/var/tmp/hull-image
rm -rf "$img"
mkdir -p "$img/usr/bin" "$img/usr/lib" "$img/usr/lib64" "$img/proc" "$img/sys" "$img/dev" "$img/tmp" "$img/etc"
ln -s usr/bin "$img/bin"
ln -s usr/lib "$img/lib"
ln -s usr/lib64 "$img/lib64"
for b in sh cat sleep setarch id; do
	p=$(command -v "$b")
	cp -L "$p" "$img/usr/bin/$b"
	for lib in $(ldd "$p" | grep -o '/[^ ]*'); do
		mkdir -p "$img$(dirname "$lib")"
		cp -L "$lib" "$img$lib"
	done
done
chmod -R a+rX "$img"
if out=$(tar -C "$img" -c . | as_user podman import - localhost/hull-check 2>&1); then
	check container-image ok "imported as $USER_NAME: $(echo "$out" | tail -n 1)"
else
	check container-image fail "$out"
fi

info=$(as_user podman info --format '{{.Host.CgroupManager}} {{.Host.CgroupsVersion}} rootless={{.Host.Security.Rootless}}' 2>&1)
case "$info" in "systemd v2 rootless=true") check podman-rootless ok "$info" ;; *) check podman-rootless fail "$info" ;; esac

status=$(as_user podman run --rm --network none localhost/hull-check cat /proc/self/status /proc/self/uid_map /sys/fs/cgroup/pids.max 2>&1)
field() { printf '%s\n' "$status" | sed -n "s/^$1:[[:space:]]*//p" | head -n 1; }
seccomp=$(field Seccomp)
nnp=$(field NoNewPrivs)
capeff=$(field CapEff)
uidmap=$(printf '%s\n' "$status" | awk 'NF == 3 && $1 ~ /^[0-9]+$/ { print $1, $2, $3; exit }')
pids=$(printf '%s\n' "$status" | tail -n 1)
pass container-seccomp "$([ "$seccomp" = 2 ]; echo $?)" "Seccomp: ${seccomp:-?}$([ -n "$seccomp" ] || echo " ($status)")"
pass container-nnp "$([ "$nnp" = 1 ]; echo $?)" "NoNewPrivs: ${nnp:-?}"
# The profile's 9 capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
# SETUID SETPCAP NET_BIND_SERVICE = bits 0-1, 3-8, 10.
pass container-caps "$([ "$capeff" = 00000000000005fb ]; echo $?)" "CapEff: ${capeff:-?} (want 00000000000005fb)"
pass container-pids "$([ "$pids" = 2048 ]; echo $?)" "pids.max: $pids"
# Container uid 0 is the rootless account (uid_map: inside, outside, count).
pass container-uidmap "$(set -- $uidmap; [ "${1:-x}" = 0 ] && [ "${2:-0}" = "$uid" ] && [ "$uid" -ge 1000 ]; echo $?)" \
	"uid_map: $uidmap (account uid $uid)"

# The host's view: the container's init runs as the rootless account's uid.
as_user podman rm -f -t 0 hull-sleeper >/dev/null 2>&1
as_user podman run -d --name hull-sleeper --network none localhost/hull-check sleep 300 >/dev/null 2>&1
pid=$(as_user podman inspect -f '{{.State.Pid}}' hull-sleeper 2>&1)
host_uid=$(stat -c %u "/proc/$pid" 2>&1)
pass container-host-uid "$([ "$host_uid" = "$uid" ] && [ "$host_uid" != 0 ]; echo $?)" \
	"container pid $pid runs as host uid $host_uid (container uid 0)"
as_user podman rm -f -t 0 hull-sleeper >/dev/null 2>&1

# personality(2) is allowed by the default seccomp profile only for a few
# personas; ADDR_NO_RANDOMIZE (setarch -R) is not one of them. With seccomp
# off the same call works: seccomp is what refused it.
blocked=$(as_user podman run --rm --network none localhost/hull-check setarch x86_64 -R id -u 2>&1)
rc_blocked=$?
unconfined=$(as_user podman run --rm --network none --security-opt seccomp=unconfined localhost/hull-check setarch x86_64 -R id -u 2>&1)
rc_unconfined=$?
pass seccomp-blocks "$([ "$rc_blocked" -ne 0 ] && [ "$rc_unconfined" -eq 0 ]; echo $?)" \
	"personality(ADDR_NO_RANDOMIZE) with the profile: exit $rc_blocked: $blocked; unconfined: exit $rc_unconfined: $unconfined"

# The default (pasta) network of a rootless container works too.
out=$(as_user podman run --rm localhost/hull-check id -u 2>&1)
pass container-default-network "$?" "podman run with the default network: $out"

# Rootful podman stays possible, and --userns=auto puts its container in a
# user namespace of its own, from the `containers` range.
tar -C "$img" -c . | podman import - localhost/hull-check-root >/dev/null 2>&1
out=$(podman run --rm --network none --userns=auto localhost/hull-check-root cat /proc/self/uid_map /proc/self/status 2>&1)
outside=$(printf '%s\n' "$out" | awk 'NF == 3 && $1 == "0" { print $2; exit }')
nnp=$(printf '%s\n' "$out" | sed -n 's/^NoNewPrivs:[[:space:]]*//p')
pass rootful-userns-auto "$([ "${outside:-0}" -ge 1048576 ] && [ "$nnp" = 1 ]; echo $?)" \
	"rootful --userns=auto: container uid 0 is host uid ${outside:-?}, NoNewPrivs ${nnp:-?}$([ -n "$outside" ] || echo ": $out")"
# The kernel has AppArmor: rootful containers run under podman's profile.
label=$(podman run --rm --network none localhost/hull-check-root cat /proc/self/attr/apparmor/current 2>&1 | tr -d '\0')
case "$label" in
containers-default*) check rootful-apparmor ok "$(cat /sys/module/apparmor/parameters/enabled 2>&1): $label" ;;
*) check rootful-apparmor fail "AppArmor $(cat /sys/module/apparmor/parameters/enabled 2>&1), label: $label" ;;
esac

rm -rf "$img"
printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
