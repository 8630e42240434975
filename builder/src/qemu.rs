//! Booting images in QEMU (in progress).
