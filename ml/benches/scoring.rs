//! Batch scoring throughput of the shipped bundles on 1,000,000 rows, one thread.
//!
//! `cargo bench -p accunode-ml --bench scoring`
//!
//! Rows are drawn deterministically across each feature's range (5 % Missing).
//! The baseline, measured in the same run, is the single-row path
//! (`Bundle::score`, which also reports each component by name); the figure that
//! matters is the batch path (`Bundle::score_batch`), as the worker uses it.
//! Each measurement is the median of 5 runs.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use accunode_core::scoring::{BatchOutput, Bundle};
use accunode_ml::random::SplitMix64;

const ROWS: usize = 1_000_000;
const RUNS: usize = 5;

fn rows_for(bundle: &Bundle) -> Vec<f64> {
    let mut rng = SplitMix64::new(42);
    let features = &bundle.manifest().features;
    let mut rows = Vec::with_capacity(ROWS * features.len());
    for _ in 0..ROWS {
        for feature in features {
            if rng.uniform() < 0.05 {
                rows.push(f64::NAN);
                continue;
            }
            let min = feature.min.unwrap_or(-50.0);
            let max = feature.max.unwrap_or(100.0);
            rows.push(min + rng.uniform() * (max - min));
        }
    }
    rows
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(mut run: impl FnMut()) -> Duration {
    run(); // warm-up
    median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    println!("{ROWS} rows per run, median of {RUNS} runs, one thread");
    println!(
        "{:<24} {:>16} {:>16} {:>8}",
        "bundle", "single rows/s", "batch rows/s", "ratio"
    );
    for id in [
        "accunode-v1-annual",
        "accunode-v1-quarterly",
        "accunode-v1-quarterly-lightgbm",
        "accunode-ensemble-annual",
        "accunode-ensemble-quarterly",
    ] {
        let bundle = Bundle::load(&models.join(id)).expect("shipped bundle loads");
        let rows = rows_for(&bundle);
        let width = bundle.feature_count();

        let single = measure(|| {
            for row in rows.chunks_exact(width) {
                black_box(bundle.score(black_box(row)).expect("valid row"));
            }
        });
        let mut output = BatchOutput::default();
        let batch = measure(|| {
            bundle
                .score_batch(black_box(&rows), &mut output)
                .expect("valid rows");
            black_box(&output);
        });
        let rate = |elapsed: Duration| ROWS as f64 / elapsed.as_secs_f64();
        println!(
            "{id:<24} {:>16.0} {:>16.0} {:>7.2}x",
            rate(single),
            rate(batch),
            rate(batch) / rate(single)
        );
    }
}
