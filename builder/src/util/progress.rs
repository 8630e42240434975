//! Progress bars for long work, drawn only when stderr is a terminal; log
//! lines tell the same story otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A byte-count bar (downloads, image writing); a spinner when the length is unknown.
pub fn bytes_bar(len: Option<u64>, message: &str) -> ProgressBar {
    log::info!("{message}");
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), target()).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target()),
    };
    bar.set_message(message.to_string());
    bar
}

/// A spinner for a step whose length is unknown (a subprocess, a commit).
pub fn spinner(message: &str) -> ProgressBar {
    log::info!("{message}");
    let bar = ProgressBar::with_draw_target(None, target()).with_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
