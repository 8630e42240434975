#!/bin/sh
# The k8s-node image's checks (qemu-tests/tests/k8s_node.rs), run once by
# hull-check.service on the console: no failed unit; containerd answers and
# its CRI plugin is up with the configuration kubelet needs (systemd cgroups,
# RuntimeDefault seccomp for pods that name none, no host devices for
# privileged pods); overlay and br_netfilter are loaded; forwarding and the
# bridge netfilter sysctls are on, rp_filter is loose, the hardening sysctls
# still hold; no swap; nothing but the kubelet port may be reachable.
#
# Prints `HULL-CHECK <name> ok|fail <detail>`, `HULL-CHECK-DONE boot=1`, and
# powers off.

export LC_ALL=C

state=$(timeout 300 systemctl is-system-running --wait 2>&1)
failed=$(systemctl --failed --no-legend --plain 2>&1 | sed 's/ .*//' | tr '\n' ' ')
pass failed-units "$([ -z "$failed" ]; echo $?)" "system is $state; failed: ${failed:-none}"

out=$(ctr version 2>&1)
case "$out" in
*Server:*Version:*) check ctr-version ok "$(printf '%s\n' "$out" | sed -n '/Server:/,$p' | tr -s ' ')" ;;
*) check ctr-version fail "$out" ;;
esac

cri=$(ctr plugins ls 2>&1 | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }')
pass cri-plugin "$([ "$cri" = ok ]; echo $?)" "io.containerd.grpc.v1 cri: ${cri:-missing}"

dump=$(containerd config dump 2>&1)
bad=""
for want in 'SystemdCgroup = true' 'unset_seccomp_profile = "runtime/default"' \
	'privileged_without_host_devices = true' 'enable_unprivileged_ports = false' 'bin_dir = "/opt/cni/bin"'; do
	printf '%s\n' "$dump" | grep -qF "$want" || bad="$bad [$want]"
done
pass cri-config "$([ -z "$bad" ]; echo $?)" "missing from containerd config dump:${bad:- nothing}"

# [containers] sandbox = "gvisor": the CRI runtime handler runsc (for a
# RuntimeClass), runsc driven by the runc v2 shim, and runsc installed.
# The runsc table and its sub-tables (options), nothing else.
handler=$(printf '%s\n' "$dump" | awk '/^ *\[/ { in_runsc = ($0 ~ /runtimes\.runsc[].]/) } in_runsc')
bad=""
for want in 'runtime_type = "io.containerd.runc.v2"' 'BinaryName = "/usr/bin/runsc"'; do
	printf '%s\n' "$handler" | grep -qF "$want" || bad="$bad [$want]"
done
version=$(runsc --version 2>&1 | head -n 1)
pass runsc-handler "$([ -n "$handler" ] && [ -z "$bad" ] && [ -x /usr/bin/runsc ]; echo $?)" \
	"${version}; handler runsc missing:${bad:- nothing}$([ -n "$handler" ] || echo ' (no runtimes.runsc in the dump)')"

mods=$(awk '{ print $1 }' /proc/modules | tr '\n' ' ')
missing=""
for m in overlay br_netfilter; do
	case " $mods " in *" $m "*) ;; *) [ -d "/sys/module/$m" ] || missing="$missing $m" ;; esac
done
pass modules "$([ -z "$missing" ]; echo $?)" "missing:${missing:- none}"

bad=""
for kv in net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 \
	net.ipv4.conf.all.rp_filter=2 kernel.kptr_restrict=2 kernel.unprivileged_bpf_disabled=1 kernel.yama.ptrace_scope=2; do
	got=$(sysctl_get "${kv%%=*}")
	[ "$got" = "${kv#*=}" ] || bad="$bad ${kv%%=*}=$got(want ${kv#*=})"
done
pass sysctls "$([ -z "$bad" ]; echo $?)" "wrong:${bad:- none}"

swaps=$(tail -n +2 /proc/swaps)
swap_target=$(systemctl is-enabled swap.target 2>&1)
pass swap-off "$([ -z "$swaps" ] && [ "$swap_target" = masked ]; echo $?)" "swap.target $swap_target; /proc/swaps: ${swaps:-empty}"

rules=$(nft list chain inet hull open-ports 2>&1)
case "$rules" in
*"tcp dport 10250 accept"*) check firewall ok "$(nft list chain inet hull input 2>&1 | grep -o 'policy [a-z]*'); open: 10250/tcp" ;;
*) check firewall fail "$rules" ;;
esac

printf 'HULL-CHECK-DONE boot=1\n'
exec systemctl poweroff
