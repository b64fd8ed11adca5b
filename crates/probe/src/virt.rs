//! Whether this host is a virtual machine or a container: both change what timings and sensors
//! mean (a vCPU may be a hyperthread, RAPL is rarely passed through, cgroups may cap the CPU).

use std::path::Path;

/// The hypervisor, from the CPUID hypervisor leaf on x86 (the vendor signature), elsewhere from
/// `/sys/hypervisor/type` and the DMI product name.
pub fn hypervisor(root: &Path) -> Option<String> {
    from_cpuid().or_else(|| from_sysfs(root))
}

#[cfg(target_arch = "x86_64")]
fn from_cpuid() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    // CPUID.1:ECX bit 31 is reserved for hypervisors to say they are there.
    if __cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let leaf = __cpuid(0x4000_0000);
    let signature: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let signature = String::from_utf8_lossy(&signature)
        .trim_end_matches('\0')
        .to_string();
    Some(hypervisor_name(&signature))
}

#[cfg(not(target_arch = "x86_64"))]
fn from_cpuid() -> Option<String> {
    None
}

/// The product behind a CPUID hypervisor vendor signature.
pub fn hypervisor_name(signature: &str) -> String {
    let known = [
        ("KVMKVMKVM", "KVM"),
        ("Microsoft Hv", "Microsoft Hyper-V"),
        ("VMwareVMware", "VMware"),
        ("XenVMMXenVMM", "Xen"),
        ("TCGTCGTCGTCG", "QEMU (TCG emulation)"),
        ("VBoxVBoxVBox", "VirtualBox"),
        (" lrpepyh  vr", "Parallels"),
        ("bhyve bhyve ", "bhyve"),
        ("ACRNACRNACRN", "ACRN"),
        ("QNXQVMBSQG", "QNX"),
        ("Linux KVM Hv", "KVM (Hyper-V enlightenments)"),
    ];
    known
        .iter()
        .find(|(sig, _)| signature.starts_with(sig.trim_end()))
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| format!("unknown hypervisor (CPUID signature '{signature}')"))
}

fn from_sysfs(root: &Path) -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .ok()
            .map(|s| s.trim().to_string())
    };
    if let Some(kind) = read("sys/hypervisor/type").filter(|s| !s.is_empty()) {
        return Some(kind);
    }
    let product = read("sys/class/dmi/id/product_name").unwrap_or_default();
    let vendor = read("sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let both = format!("{vendor} {product}");
    [
        "QEMU",
        "KVM",
        "VMware",
        "VirtualBox",
        "Virtual Machine",
        "Google Compute Engine",
        "Amazon EC2",
    ]
    .iter()
    .find(|k| both.contains(*k))
    .map(|_| both.trim().to_string())
}

/// The container runtime, from the marker files runtimes leave and the cgroup of PID 1.
pub fn container(root: &Path) -> Option<String> {
    if root.join(".dockerenv").exists() {
        return Some("docker".into());
    }
    if root.join("run/.containerenv").exists() {
        return Some("podman".into());
    }
    let cgroup = std::fs::read_to_string(root.join("proc/1/cgroup")).unwrap_or_default();
    [
        ("kubepods", "kubernetes"),
        ("docker", "docker"),
        ("containerd", "containerd"),
        ("lxc", "lxc"),
    ]
    .iter()
    .find(|(marker, _)| cgroup.contains(marker))
    .map(|(_, name)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hypervisors_by_signature() {
        assert_eq!(hypervisor_name("KVMKVMKVM"), "KVM");
        assert_eq!(hypervisor_name("Microsoft Hv"), "Microsoft Hyper-V");
        assert!(hypervisor_name("NewVisor").contains("NewVisor"));
    }

    #[test]
    fn finds_containers_and_vms_in_a_fixture_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(container(root.path()), None);
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(
            root.path().join("proc/1/cgroup"),
            "0::/kubepods/burstable/pod1234\n",
        )
        .unwrap();
        assert_eq!(container(root.path()).as_deref(), Some("kubernetes"));
        std::fs::write(root.path().join(".dockerenv"), "").unwrap();
        assert_eq!(container(root.path()).as_deref(), Some("docker"));
        std::fs::create_dir_all(root.path().join("sys/class/dmi/id")).unwrap();
        std::fs::write(root.path().join("sys/class/dmi/id/sys_vendor"), "QEMU\n").unwrap();
        std::fs::write(
            root.path().join("sys/class/dmi/id/product_name"),
            "Standard PC (Q35 + ICH9, 2009)\n",
        )
        .unwrap();
        assert_eq!(
            from_sysfs(root.path()).as_deref(),
            Some("QEMU Standard PC (Q35 + ICH9, 2009)")
        );
    }
}
