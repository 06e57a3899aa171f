//! The process-wide Prometheus recorder behind the `metrics` macros.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder on first use and returns the handle that renders
/// the exposition text. Safe to call from every server in one process.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Buckets (not the default summaries) so that latency can be
        // aggregated across replicas; from 0.5 ms to 10 s.
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(&LATENCY_BUCKETS_SECONDS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests embedding the
        // suite); ours then renders nothing, which is the honest answer.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// Prometheus text exposition of everything recorded so far, then the
/// process gauges a soak or a leak hunt watches.
pub fn render() -> String {
    let mut text = handle().render();
    process_gauges(&mut text);
    text
}

/// Live tokio tasks, resident memory, open descriptors and threads, read
/// when scraped (Linux `/proc`; absent elsewhere).
fn process_gauges(text: &mut String) {
    use std::fmt::Write as _;
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let tasks = runtime.metrics().num_alive_tasks();
        gauge(
            "tokio_alive_tasks",
            "Tasks alive in this runtime.",
            tasks as u64,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    if let Some(kib) = field("VmRSS:") {
        gauge(
            "process_resident_memory_bytes",
            "Resident memory.",
            kib * 1024,
        );
    }
    if let Some(threads) = field("Threads:") {
        gauge("process_threads", "OS threads.", threads);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Open file descriptors.",
            fds.count() as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_process_gauges_count_what_they_name() {
        let before = gauge(&super::render(), "tokio_alive_tasks");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = stopped.await;
        });
        let text = super::render();
        assert_eq!(gauge(&text, "tokio_alive_tasks"), before + 1);
        assert!(gauge(&text, "process_resident_memory_bytes") > 1024 * 1024);
        assert!(
            gauge(&text, "process_open_fds") >= 3,
            "stdin, stdout, stderr"
        );
        assert!(gauge(&text, "process_threads") >= 1);
        let _ = stop.send(());
        task.await.unwrap();
    }

    fn gauge(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    }
}
