//! `loadgen`: open-loop HTTP load at a fixed rate.
//!
//! wrk is closed-loop: a slow answer delays the next request, so a stall
//! hides in its percentiles. Here a dispatcher thread schedules request `i`
//! at `start + i / rate` whatever the answers do, and each latency runs
//! from that scheduled time, so queueing behind a slow answer counts.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/demo/echo/ --rate 5000 --seconds 10 \
//!     [--connections 64] [--warmup 2] [--header 'X-API-Key: sk-...']
//! ```
//!
//! Prints one line: `achieved_rps p50_ms p90_ms p99_ms p999_ms max_ms errors`.

#![allow(clippy::print_stdout)]

mod options;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};

use options::Options;

fn main() -> anyhow::Result<()> {
    let options = Arc::new(Options::parse(std::env::args().skip(1))?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (schedule, scheduled) = mpsc::unbounded_channel();
    let start = Instant::now() + Duration::from_millis(100);
    let dispatcher = {
        let options = Arc::clone(&options);
        std::thread::spawn(move || dispatch(&options, start, &schedule))
    };
    let report = runtime.block_on(run(Arc::clone(&options), start, scheduled))?;
    let sent = dispatcher
        .join()
        .map_err(|_| anyhow::anyhow!("the dispatcher panicked"))?;
    let measured = report.histogram.len() + report.errors;
    anyhow::ensure!(measured > 0, "no request was measured ({sent} sent)");
    let achieved = measured as f64 / options.seconds.as_secs_f64();
    let ms = |quantile: f64| report.histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{achieved:.0} {:.3} {:.3} {:.3} {:.3} {:.3} {}",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(0.999),
        report.histogram.max() as f64 / 1000.0,
        report.errors
    );
    Ok(())
}

/// Sends each request's scheduled start, on time: `thread::sleep` on
/// Linux wakes within tens of microseconds, tokio's timer only per
/// millisecond. Returns how many were scheduled.
fn dispatch(options: &Options, start: Instant, schedule: &mpsc::UnboundedSender<Instant>) -> u64 {
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let end = start + options.warmup + options.seconds;
    let mut next = start;
    let mut sent = 0;
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if schedule.send(next).is_err() {
            break;
        }
        sent += 1;
        next += interval;
    }
    sent
}

/// What the workers measured after the warm-up.
struct Report {
    histogram: Histogram<u64>,
    errors: u64,
}

async fn run(
    options: Arc<Options>,
    start: Instant,
    scheduled: mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<Report> {
    let scheduled = Arc::new(Mutex::new(scheduled));
    let measure_from = start + options.warmup;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        let worker = worker::Worker::new(Arc::clone(&options), measure_from)?;
        workers.spawn(worker.run(Arc::clone(&scheduled)));
    }
    let mut report = Report {
        histogram: Histogram::new(3)?,
        errors: 0,
    };
    while let Some(done) = workers.join_next().await {
        let (histogram, errors) = done??;
        report.histogram.add(histogram)?;
        report.errors += errors;
    }
    Ok(report)
}
