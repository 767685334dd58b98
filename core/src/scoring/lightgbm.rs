//! The `lightgbm` component: a LightGBM model in LightGBM's text format (what
//! Python's `Booster.save_model` writes), scored through the `lightgbm3` crate.
//!
//! LightGBM's `Booster` is neither `Send` nor `Sync`, and one booster serialises
//! its predictions behind a lock. So the component keeps the model *text*, which
//! is shareable, and each thread that scores parses its own booster once, on
//! first use, into a thread-local cache: no lock is shared between threads and
//! no `unsafe impl Send` is needed. LightGBM is built without OpenMP and every
//! prediction asks for one thread, so a server's threads are the parallelism.
//! A cached booster lives as long as its thread; a bundle swapped out leaves at
//! most one parsed copy per thread that had used it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lightgbm3::Booster;

/// Every prediction runs on the calling thread only.
const PREDICT_PARAMS: &str = "num_threads=1";

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static BOOSTERS: RefCell<HashMap<u64, Booster>> = RefCell::new(HashMap::new());
}

#[derive(Debug)]
pub struct LightGbm {
    /// Identifies this loaded model in every thread's cache.
    id: u64,
    model_text: Arc<str>,
    feature_count: usize,
    /// The value a missing ratio is replaced with; `None` lets LightGBM route
    /// NaN by its own missing-value rules.
    fill_missing: Option<f64>,
}

impl LightGbm {
    /// Parses the model once to check it: a binary model over `feature_count` features.
    pub fn from_text(
        model_text: String,
        feature_count: usize,
        fill_missing: Option<f64>,
    ) -> Result<Self, String> {
        let booster = Booster::from_string(&model_text)
            .map_err(|error| format!("not a LightGBM text model: {error}"))?;
        if booster.num_classes() != 1 {
            return Err(format!(
                "expected a binary model (one output), it has {} classes",
                booster.num_classes()
            ));
        }
        if booster.num_features() as usize != feature_count {
            return Err(format!(
                "the model takes {} features, the bundle has {feature_count}",
                booster.num_features()
            ));
        }
        let component = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            model_text: model_text.into(),
            feature_count,
            fill_missing,
        };
        BOOSTERS.with(|cache| cache.borrow_mut().insert(component.id, booster));
        Ok(component)
    }

    /// Probabilities of `rows` (row-major, NaN = missing) in one LightGBM call.
    pub fn probabilities(&self, rows: &[f64]) -> Result<Vec<f64>, String> {
        let filled;
        let input = match self.fill_missing {
            Some(fill) if rows.iter().any(|value| value.is_nan()) => {
                filled = rows
                    .iter()
                    .map(|value| if value.is_nan() { fill } else { *value })
                    .collect::<Vec<f64>>();
                &filled[..]
            }
            _ => rows,
        };
        BOOSTERS.with(|cache| {
            let mut cache = cache.borrow_mut();
            let booster = match cache.entry(self.id) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                    Booster::from_string(&self.model_text).map_err(|error| error.to_string())?,
                ),
            };
            booster
                .predict_with_params(input, self.feature_count as i32, true, PREDICT_PARAMS)
                .map_err(|error| error.to_string())
        })
    }
}
