//! `accunode model synth`: writes a labelled, SEMI-SYNTHETIC data set.
//!
//! There is no public labelled corporate-default data here, so training and
//! calibration are judged on data whose true default probability is known by
//! construction:
//!
//! 1. Ratios: each output row resamples one real input row (a bulk-upload file
//!    such as `data/original-bulk-samples/annual.csv`) whose values are
//!    all inside the bundle's fitted ranges, and multiplies each present value
//!    by `1 + 0.05·N(0, 1)` (clamped back into range). Missing stays Missing, so
//!    the real missingness pattern is kept.
//! 2. True probability: `p = 1 / (1 + exp(-(INTERCEPT + Σ WEIGHT·direction·z)))`
//!    where `z` is the value standardised by the source rows' median and
//!    inter-quartile range, clipped to [-3, 3], and `direction` is +1 for a
//!    ratio where more means riskier (debt ratios) and -1 where more means safer
//!    (margins, SG&A margin, returns, interest coverage; see
//!    `accunode_core::scoring::features::risk_direction`). A Missing ratio counts as
//!    `z = MISSING_Z` (mildly risky: unreported figures are a warning sign).
//! 3. Label: `default = 1` with probability `p`, drawn from the same seeded
//!    generator.
//!
//! Same input, bundle, row count and seed give a byte-identical file. The output
//! is every feature, then `true_probability` and `default`.

use std::path::Path;

use crate::random::SplitMix64;
use accunode_core::scoring::Bundle;
use accunode_core::scoring::features::risk_direction;
use accunode_core::scoring::input::parse_ratio;
use anyhow::{Context, bail};

const INTERCEPT: f64 = -3.6;
const WEIGHT: f64 = 0.7;
const MISSING_Z: f64 = 0.5;
const JITTER: f64 = 0.05;

/// Median and inter-quartile range of the present values (IQR 1 when degenerate).
fn median_and_iqr(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let iqr = at(0.75) - at(0.25);
    (at(0.5), if iqr > 0.0 { iqr } else { 1.0 })
}

/// What was written: row count and the realised default rate.
#[derive(Debug, PartialEq)]
pub struct SynthSummary {
    pub rows: usize,
    pub defaults: usize,
    pub source_rows: usize,
}

pub fn synthesise(
    bundle: &Bundle,
    from: &Path,
    rows: usize,
    seed: u64,
    out: &Path,
) -> anyhow::Result<SynthSummary> {
    let features = &bundle.manifest().features;
    let directions: Vec<f64> = features
        .iter()
        .map(|f| {
            risk_direction(&f.name)
                .map(|direction| f64::from(direction.sign()))
                .with_context(|| format!("no risk direction is defined for feature {:?}", f.name))
        })
        .collect::<anyhow::Result<_>>()?;

    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(from)
        .with_context(|| format!("cannot read --from {}", from.display()))?;
    let headers = reader
        .headers()
        .context("cannot read the header row of --from")?
        .clone();
    let columns: Vec<usize> = features
        .iter()
        .map(|f| {
            headers
                .iter()
                .position(|h| h.trim() == f.name)
                .with_context(|| format!("--from {} has no column {:?}", from.display(), f.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut sources: Vec<Vec<f64>> = Vec::new();
    for record in reader.records() {
        let record = record.context("cannot read a row of --from")?;
        let parsed: Option<Vec<f64>> = columns
            .iter()
            .map(|&c| record.get(c).and_then(|text| parse_ratio(text).ok()))
            .collect();
        if let Some(row) = parsed
            && bundle.validate(&row).is_ok()
            && !bundle.has_range_warning(&row)
        {
            sources.push(row);
        }
    }
    if sources.is_empty() {
        bail!(
            "--from {} has no row with every ratio valid for {}",
            from.display(),
            bundle.id()
        );
    }
    let scales: Vec<(f64, f64)> = (0..features.len())
        .map(|i| {
            let mut present: Vec<f64> = sources
                .iter()
                .map(|r| r[i])
                .filter(|v| !v.is_nan())
                .collect();
            if present.is_empty() {
                (0.0, 1.0)
            } else {
                median_and_iqr(&mut present)
            }
        })
        .collect();

    let partial = out.with_extension("partial");
    let mut writer = csv::Writer::from_path(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut header: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
    header.extend(["true_probability", "default"]);
    writer.write_record(&header)?;
    let mut rng = SplitMix64::new(seed);
    let mut defaults = 0;
    let mut fields: Vec<String> = Vec::with_capacity(header.len());
    for _ in 0..rows {
        let source = &sources[(rng.uniform() * sources.len() as f64) as usize % sources.len()];
        fields.clear();
        let mut linear = INTERCEPT;
        for (i, feature) in features.iter().enumerate() {
            let jitter = 1.0 + JITTER * rng.normal();
            let value = source[i];
            let z = if value.is_nan() {
                fields.push(String::new());
                MISSING_Z
            } else {
                let mut jittered = value * jitter;
                if let Some(min) = feature.min {
                    jittered = jittered.max(min);
                }
                if let Some(max) = feature.max {
                    jittered = jittered.min(max);
                }
                fields.push(jittered.to_string());
                ((jittered - scales[i].0) / scales[i].1).clamp(-3.0, 3.0)
            };
            linear += WEIGHT * directions[i] * z;
        }
        let probability = 1.0 / (1.0 + (-linear).exp());
        let default = rng.uniform() < probability;
        defaults += usize::from(default);
        fields.push(probability.to_string());
        fields.push(if default { "1" } else { "0" }.to_owned());
        writer.write_record(&fields)?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot write --out {}", out.display()))?;
    Ok(SynthSummary {
        rows,
        defaults,
        source_rows: sources.len(),
    })
}
