//! Disk image writing (in progress).
