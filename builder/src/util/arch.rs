//! The CPU architectures hull builds for, and the one parser of their names.

use serde::Serialize;

/// A CPU architecture an image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Every architecture hull builds.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name hull uses in refs and file names (`x86_64`, `aarch64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for the architecture (`amd64`, `arm64`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    /// Parses hull's names (`x86_64`, `aarch64`): the one parser of them,
    /// for the manifest, the command line and the host.
    fn from_str(s: &str) -> Result<Arch, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown architecture {s:?} (expected \"x86_64\" or \"aarch64\")")
            })
    }
}

impl Arch {
    /// The architecture this hull binary was built for, if hull builds it.
    pub fn of_this_binary() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
