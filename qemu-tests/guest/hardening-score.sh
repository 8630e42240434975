#!/bin/sh
# Measurements for bench/hardening-score.sh, run once by hull-check.service on
# the console of the image measured (hull's minimal image or the baseline).
# Every figure is one line, `HULL-CHECK <name> ok|fail <value>`, read by
# qemu-tests/tests/hardening_score.rs; `fail` means "not as recommended", not
# a broken run:
#   cmdline:<arg>     each KSPP command-line option (docs/hardening.md)
#   sysctl:<name>     each KSPP/CIS sysctl
#   lynis             lynis' hardening index
#   exposure:<unit>   systemd-analyze security, every enabled service
#   listen            ss -tulpn
#   container:<what>  Seccomp, NoNewPrivs, CapEff, uid_map inside a rootless container

export LC_ALL=C

timeout 300 systemctl is-system-running --wait >/dev/null 2>&1

# --- KSPP kernel command line: name=recommended value (no value: a flag)
cmdline=" $(cat /proc/cmdline) "
for want in slab_nomerge init_on_alloc=1 init_on_free=1 page_alloc.shuffle=1 randomize_kstack_offset=on \
	vsyscall=none debugfs=off pti=on lockdown=integrity module.sig_enforce=1 iommu=force iommu.strict=1 \
	iommu.passthrough=0 intel_iommu=on efi=disable_early_pci_dma mitigations=auto,nosmt oops=panic \
	kfence.sample_interval=100 hash_pointers=always ia32_emulation=0 bdev_allow_write_mounted=0 \
	proc_mem.force_override=never; do
	name=${want%%=*}
	got=$(printf '%s' "$cmdline" | tr ' ' '\n' | grep -E "^$name(=|\$)" | tail -n 1)
	if [ "$got" = "$want" ]; then
		check "cmdline:$name" ok "$got"
	else
		check "cmdline:$name" fail "${got:-unset}"
	fi
done

# --- sysctls: name=recommended value
for want in net.core.bpf_jit_harden=2 vm.mmap_min_addr=65536 kernel.oops_limit=100 kernel.warn_limit=100 \
	kernel.dmesg_restrict=1 kernel.kptr_restrict=2 kernel.perf_event_paranoid=3 dev.tty.ldisc_autoload=0 \
	dev.tty.legacy_tiocsti=0 kernel.kexec_load_disabled=1 kernel.unprivileged_bpf_disabled=1 \
	vm.unprivileged_userfaultfd=0 kernel.io_uring_disabled=2 kernel.sysrq=0 fs.protected_symlinks=1 \
	fs.protected_hardlinks=1 fs.protected_fifos=2 fs.protected_regular=2 fs.suid_dumpable=0 \
	kernel.randomize_va_space=2 kernel.yama.ptrace_scope=2 vm.mmap_rnd_bits=32 \
	net.ipv4.conf.all.accept_redirects=0 net.ipv6.conf.all.accept_redirects=0 \
	net.ipv4.conf.all.secure_redirects=0 net.ipv4.conf.all.send_redirects=0 \
	net.ipv4.conf.all.accept_source_route=0 net.ipv6.conf.all.accept_source_route=0 \
	net.ipv4.tcp_syncookies=1 net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.all.log_martians=1 \
	net.ipv4.icmp_ignore_bogus_error_responses=1 net.ipv4.icmp_echo_ignore_broadcasts=1; do
	name=${want%%=*}
	got=$(sysctl_get "$name")
	if [ "$got" = "${want#*=}" ]; then
		check "sysctl:$name" ok "$got"
	else
		check "sysctl:$name" fail "${got:-absent}"
	fi
done

# --- lynis
index=$(timeout 1500 lynis audit system --quick --no-colors --no-log 2>/dev/null | sed -n 's/.*Hardening index : \([0-9]*\).*/\1/p' | head -n 1)
if [ -n "$index" ]; then check lynis ok "$index"; else check lynis fail "no hardening index"; fi

# --- systemd-analyze security: every enabled service that is loaded
# Asked up to three times: right after lynis, on a loaded TCG guest, PID 1
# has answered "Connection timed out" (D-Bus's 25 s).
units=""
for try in 1 2 3; do
	units=$(systemctl list-unit-files --type=service --state=enabled --no-legend --plain 2>&1) && break
	sleep 10
done
if [ -z "$(printf '%s' "$units" | grep '\.service')" ]; then
	check exposure fail "systemctl list-unit-files: $units"
fi
for unit in $(printf '%s\n' "$units" | awk '$1 ~ /\.service$/ { print $1 }'); do
	case "$unit" in *@.service) continue ;; esac
	score=$(systemd-analyze security --no-pager "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$score" ] && check "exposure:$unit" ok "$score"
done

# --- listening sockets
listen=$(ss -H -tulpn 2>&1 | awk '{ print $1, $5, $7 }' | tr '\n' ';')
check listen ok "${listen:-none}"

# --- a rootless container: the dedicated account if there is one, else the first user
user=rootless
id "$user" >/dev/null 2>&1 || user=core
uid=$(id -u "$user")
loginctl enable-linger "$user" 2>/dev/null
i=0
while [ "$(systemctl is-active "user@$uid.service")" != active ] && [ $i -lt 60 ]; do
	sleep 1
	i=$((i + 1))
done
img=/var/tmp/hull-score-image
rm -rf "$img"
mkdir -p "$img/usr/bin" "$img/usr/lib" "$img/usr/lib64" "$img/proc" "$img/sys" "$img/dev" "$img/tmp" "$img/etc"
ln -s usr/bin "$img/bin"
ln -s usr/lib "$img/lib"
ln -s usr/lib64 "$img/lib64"
for b in sh cat; do
	p=$(command -v "$b")
	cp -L "$p" "$img/usr/bin/$b"
	for lib in $(ldd "$p" | grep -o '/[^ ]*'); do
		mkdir -p "$img$(dirname "$lib")"
		cp -L "$lib" "$img$lib"
	done
done
chmod -R a+rX "$img"
as_user() {
	(cd / && runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" XDG_RUNTIME_DIR="/run/user/$uid" \
		DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@")
}
tar -C "$img" -c . | as_user podman import - localhost/score >/dev/null 2>&1
status=$(as_user podman run --rm localhost/score cat /proc/self/status /proc/self/uid_map 2>&1)
field() { printf '%s\n' "$status" | sed -n "s/^$1:[[:space:]]*//p" | head -n 1; }
check container:user ok "$user (uid $uid)"
for f in Seccomp NoNewPrivs CapEff; do
	v=$(field $f)
	check "container:$f" ok "${v:-$(printf '%s' "$status" | tail -n 1)}"
done
check container:uid_map ok "$(printf '%s\n' "$status" | awk 'NF == 3 && $1 ~ /^[0-9]+$/ { printf "%s %s %s; ", $1, $2, $3 }')"
rm -rf "$img"

printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
