//! The node's log lines, captured: the process's global `tracing` subscriber (as `gojinn serve`
//! installs one; guest calls log on the executor's threads, which see only the global one),
//! formatting `gojinn` events as the node does, without colours, into a buffer tests read. Tests
//! run at once share it: look for lines of your own tenant.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// What the node logged since the first call of [`Logs::global`].
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The capture, installed as the global subscriber on first use.
    pub fn global() -> &'static Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let writer = logs.clone();
            let format =
                tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone());
            let subscriber = tracing_subscriber::registry()
                .with(format.with_filter(Targets::new().with_target("gojinn", LevelFilter::INFO)));
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
            logs
        })
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
