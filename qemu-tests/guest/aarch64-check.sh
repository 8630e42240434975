# The aarch64 image's own checks, the function aarch64_checks, which the
# aarch64 update test calls on image A's first boot (tests/aarch64.rs;
# the harness joins the scripts): the machine is arm64, the
# cross-built agent runs against the image's libostree, systemd-boot is the
# ESP's BOOTAA64.EFI, the root partition has the arm64 root type and the
# console is the PL011 UART.

aarch64_checks() {
	machine=$(uname -m)
	if [ "$machine" = aarch64 ]; then
		check arch ok "$machine"
	else
		check arch fail "uname -m: $machine"
	fi

	if out=$(hull --version 2>&1) && status=$(hull status 2>&1); then
		check agent ok "$out; $(printf '%s' "$status" | head -n 1)"
	else
		check agent fail "hull --version / hull status: $out $status"
	fi

	if [ -s /efi/EFI/BOOT/BOOTAA64.EFI ]; then
		check esp-bootaa64 ok "$(stat -c %s /efi/EFI/BOOT/BOOTAA64.EFI) bytes"
	else
		check esp-bootaa64 fail "no /efi/EFI/BOOT/BOOTAA64.EFI: $(ls -R /efi 2>&1 | head -n 20)"
	fi

	root=$(readlink -f /dev/disk/by-label/hull-root)
	type=$(udevadm info --query=property --name="$root" 2>&1 | sed -n 's/^ID_PART_ENTRY_TYPE=//p')
	if [ "$type" = b921b045-1df0-41c3-af44-4c6f280d3fae ]; then
		check root-part-type ok "$root $type"
	else
		check root-part-type fail "$root has type '$type'"
	fi

	case " $(cat /proc/cmdline) " in
	*" console=ttyAMA0"*) check console ok "$(cat /proc/cmdline)" ;;
	*) check console fail "no console=ttyAMA0 in: $(cat /proc/cmdline)" ;;
	esac

	# The hardening profile's arm64 command line: its own page-table
	# isolation switch, none of the x86-only options, nothing the kernel
	# does not know (ostree= is for the initramfs, and expected).
	cmdline=" $(cat /proc/cmdline) "
	unknown=$(dmesg 2>/dev/null | sed -n 's/.*Unknown kernel command line parameters "\(.*\)", will be passed.*/\1/p' |
		tr ' ' '\n' | grep -v '^ostree=' | tr '\n' ' ')
	case "$cmdline" in
	*" vsyscall="* | *" pti="* | *" intel_iommu="* | *" ia32_emulation="*)
		check hardening-cmdline fail "x86 options in: $cmdline" ;;
	*" kpti=1 "*)
		case "$cmdline" in
		*" lockdown=integrity "*)
			if [ -z "$(echo $unknown)" ]; then
				check hardening-cmdline ok "kpti=1, lockdown $(cat /sys/kernel/security/lockdown 2>&1), no unknown option"
			else
				check hardening-cmdline fail "unknown to the kernel: $unknown"
			fi ;;
		*) check hardening-cmdline fail "no lockdown=integrity in: $cmdline" ;;
		esac ;;
	*) check hardening-cmdline fail "no kpti=1 in: $cmdline" ;;
	esac
}
