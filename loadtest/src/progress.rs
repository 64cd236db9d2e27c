//! Live progress on the terminal (indicatif): a bar while sessions join, a
//! spinner with the current rates while they chat. Without a terminal on
//! stderr both are hidden, and the scenarios print plain lines instead.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `prefix`, with a message after it.
pub fn bar(len: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_prefix(prefix);
    bar.set_style(
        ProgressStyle::with_template("  {prefix} [{bar:32}] {pos}/{len} ({per_sec}), {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A spinner whose message is the news.
pub fn spinner() -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("  {spinner} {elapsed} {wide_msg}").expect("a valid template"));
    spinner.enable_steady_tick(Duration::from_millis(250));
    spinner
}

/// Clears a bar when dropped, also when its task is aborted.
pub struct ClearOnDrop(pub ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
