//! The OSTree repository as both sides see it: [`commit`] (writing a
//! commit, reading its metadata, moving refs), [`delta`] (static deltas
//! between commits), [`sign`] (ed25519 keys and
//! commit signatures), [`summary`] (the signed, expiring summary) and
//! [`reuse`] (a commit that skips the files the repository holds, with
//! [`checksum_cache`], their checksums by inode from the last commit),
//! [`prewrite`] (a cold commit's files compressed on every core) and
//! [`sizes`] (the signed size list of what a commit adds to its parent).
//! The build writes through these; the host agent reads through them.

pub mod checksum_cache;
pub mod commit;
pub mod delta;
pub mod prewrite;
pub mod reuse;
pub mod sign;
pub mod sizes;
pub mod summary;
