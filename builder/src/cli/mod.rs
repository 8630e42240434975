//! The command line, parsed from an iterator so tests can drive it.
//!
//! Doc comments here are the `--help` text, written for a terminal, not for
//! rustdoc: `<arch>` and `[update]` stay as they read.
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls
)]

mod args;
mod dispatch;
mod update_line;

pub use args::*;
pub use dispatch::run;
