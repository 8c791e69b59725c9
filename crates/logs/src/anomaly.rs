//! Online anomaly detection over the stream of assigned records: [`AnomalyDetector`].
//!
//! Three kinds, each judged against the stream's own history, with no per-dataset settings:
//! - **new template**: a template first seen after the warm-up (the first records teach the
//!   miner what is normal; a template born later is news);
//! - **template spike**: a template's count in the current bucket far above its own
//!   exponentially weighted mean and spread over past buckets;
//! - **error-share spike**: the share of `error`-or-worse records in a bucket far above its
//!   baseline.
//!
//! Buckets are minutes of the records' own timestamps; records without one are bucketed by
//! count (every 1,000 records stand in for a minute), so undated files still get baselines.
//! State is per template and bounded by the miner's template cap.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::miner::TemplateId;

/// Records per pseudo-minute when records carry no timestamp.
pub const RECORDS_PER_BUCKET: u64 = 1000;

/// What kind of anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A template first seen after the warm-up.
    NewTemplate,
    /// A template's rate far above its baseline.
    TemplateSpike,
    /// The share of error records far above its baseline.
    ErrorShareSpike,
}

impl AnomalyKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::NewTemplate => "new_template",
            AnomalyKind::TemplateSpike => "template_spike",
            AnomalyKind::ErrorShareSpike => "error_share_spike",
        }
    }
}

/// One anomaly found.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// The kind.
    pub kind: AnomalyKind,
    /// The template concerned (not for error-share spikes).
    pub template_id: Option<TemplateId>,
    /// The bucket: minute start in Unix ms, or the pseudo-minute number for undated records.
    pub bucket: i64,
    /// Whether `bucket` is a real time.
    pub dated: bool,
    /// Observed value in the bucket (count or share).
    pub observed: f64,
    /// The baseline it was compared with (mean count or share).
    pub baseline: f64,
}

/// Detector settings.
#[derive(Clone, Debug)]
pub struct AnomalyConfig {
    /// Records seen before new templates count as anomalies.
    pub warmup_records: u64,
    /// Past buckets needed before a spike can be judged.
    pub min_history: u32,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            warmup_records: 1000,
            min_history: 5,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Rate {
    bucket: i64,
    count: u64,
    mean: f64,
    var: f64,
    history: u32,
    fired: bool,
}

const ALPHA: f64 = 0.1;
/// Spikes need this many records in the bucket at least, so one-off blips never page anyone.
const MIN_SPIKE_COUNT: u64 = 20;

impl Rate {
    /// Closes buckets up to `bucket`, folding the counts of the closed ones (and zero for any
    /// skipped) into the baseline.
    fn advance(&mut self, bucket: i64) {
        if bucket <= self.bucket {
            return;
        }
        let gap = (bucket - self.bucket).min(1000);
        for k in 0..gap {
            let x = if k == 0 { self.count as f64 } else { 0.0 };
            let d = x - self.mean;
            self.mean += ALPHA * d;
            self.var = (1.0 - ALPHA) * (self.var + ALPHA * d * d);
            self.history = self.history.saturating_add(1);
        }
        self.bucket = bucket;
        self.count = 0;
        self.fired = false;
    }

    fn threshold(&self) -> f64 {
        let sd = self.var.max(0.0).sqrt();
        (self.mean + 4.0 * sd)
            .max(3.0 * self.mean)
            .max(MIN_SPIKE_COUNT as f64)
    }
}

/// Finds anomalies as records stream past.
pub struct AnomalyDetector {
    config: AnomalyConfig,
    seen: u64,
    rates: FxHashMap<TemplateId, Rate>,
    share_bucket: Option<i64>,
    share_dated: bool,
    share_count: u64,
    errors: u64,
    share_mean: f64,
    share_var: f64,
    share_history: u32,
}

/// The most per-template rate states kept.
const MAX_RATES: usize = 50_000;

impl AnomalyDetector {
    /// A detector with `config`.
    pub fn new(config: AnomalyConfig) -> Self {
        Self {
            config,
            seen: 0,
            rates: FxHashMap::default(),
            share_bucket: None,
            share_dated: false,
            share_count: 0,
            errors: 0,
            share_mean: 0.0,
            share_var: 0.0,
            share_history: 0,
        }
    }

    /// The bucket of a record: its minute, or its pseudo-minute by count.
    pub fn bucket_of(&self, timestamp: Option<i64>) -> (i64, bool) {
        match timestamp {
            Some(ms) => (ms.div_euclid(60_000) * 60_000, true),
            None => ((self.seen / RECORDS_PER_BUCKET) as i64, false),
        }
    }

    /// Observes one record; pushes what it reveals into `out`.
    pub fn observe(
        &mut self,
        id: TemplateId,
        created: bool,
        timestamp: Option<i64>,
        is_error: bool,
        out: &mut Vec<Anomaly>,
    ) {
        let (bucket, dated) = self.bucket_of(timestamp);
        self.seen += 1;
        if created && self.seen > self.config.warmup_records {
            out.push(Anomaly {
                kind: AnomalyKind::NewTemplate,
                template_id: Some(id),
                bucket,
                dated,
                observed: 1.0,
                baseline: 0.0,
            });
        }
        // Error share is judged when a bucket closes, on the whole bucket.
        match self.share_bucket {
            Some(b) if bucket > b => {
                self.close_share_bucket(out);
                self.share_bucket = Some(bucket);
            }
            None => self.share_bucket = Some(bucket),
            Some(_) => {}
        }
        self.share_dated = dated;
        self.share_count += 1;
        if is_error {
            self.errors += 1;
        }
        if self.rates.len() >= MAX_RATES && !self.rates.contains_key(&id) {
            let cutoff = bucket - 60 * 60_000;
            self.rates.retain(|_, r| r.bucket >= cutoff);
            if self.rates.len() >= MAX_RATES {
                self.rates.clear();
            }
        }
        let rate = self.rates.entry(id).or_insert_with(|| Rate {
            bucket,
            ..Rate::default()
        });
        rate.advance(bucket);
        rate.count += 1;
        if !rate.fired
            && rate.history >= self.config.min_history
            && rate.count as f64 > rate.threshold()
        {
            rate.fired = true;
            out.push(Anomaly {
                kind: AnomalyKind::TemplateSpike,
                template_id: Some(id),
                bucket,
                dated,
                observed: rate.count as f64,
                baseline: rate.mean,
            });
        }
    }

    fn close_share_bucket(&mut self, out: &mut Vec<Anomaly>) {
        let n = self.share_count;
        if n == 0 {
            return;
        }
        let share = self.errors as f64 / n as f64;
        let sd = self.share_var.max(0.0).sqrt();
        let limit = (self.share_mean + 4.0 * sd)
            .max(3.0 * self.share_mean)
            .max(0.05);
        if self.share_history >= self.config.min_history && n >= MIN_SPIKE_COUNT && share > limit {
            out.push(Anomaly {
                kind: AnomalyKind::ErrorShareSpike,
                template_id: None,
                bucket: self.share_bucket.unwrap_or(0),
                dated: self.share_dated,
                observed: share,
                baseline: self.share_mean,
            });
        }
        let d = share - self.share_mean;
        self.share_mean += ALPHA * d;
        self.share_var = (1.0 - ALPHA) * (self.share_var + ALPHA * d * d);
        self.share_history += 1;
        self.errors = 0;
        self.share_count = 0;
    }

    /// Judges the last open bucket; call at the end of input.
    pub fn finish(&mut self, out: &mut Vec<Anomaly>) {
        self.close_share_bucket(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_templates_after_warmup_only() {
        let mut d = AnomalyDetector::new(AnomalyConfig {
            warmup_records: 2,
            min_history: 5,
        });
        let mut out = Vec::new();
        d.observe(TemplateId(1), true, None, false, &mut out);
        d.observe(TemplateId(2), true, None, false, &mut out);
        assert!(out.is_empty());
        d.observe(TemplateId(3), true, None, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, AnomalyKind::NewTemplate);
    }

    #[test]
    fn template_spike_against_own_baseline() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut out = Vec::new();
        // Ten quiet minutes of 5 per minute, then a minute with 200.
        for minute in 0..10i64 {
            for _ in 0..5 {
                d.observe(TemplateId(9), false, Some(minute * 60_000), false, &mut out);
            }
        }
        assert!(out.is_empty());
        for _ in 0..200 {
            d.observe(TemplateId(9), false, Some(10 * 60_000), false, &mut out);
        }
        let spikes: Vec<_> = out
            .iter()
            .filter(|a| a.kind == AnomalyKind::TemplateSpike)
            .collect();
        assert_eq!(spikes.len(), 1, "fires once per bucket");
        assert_eq!(spikes[0].bucket, 10 * 60_000);
    }

    #[test]
    fn error_share_spike() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut out = Vec::new();
        for minute in 0..10i64 {
            for i in 0..100 {
                d.observe(
                    TemplateId(1),
                    false,
                    Some(minute * 60_000),
                    i == 0,
                    &mut out,
                );
            }
        }
        for i in 0..100 {
            d.observe(TemplateId(1), false, Some(10 * 60_000), i < 60, &mut out);
        }
        d.finish(&mut out);
        assert!(
            out.iter()
                .any(|a| a.kind == AnomalyKind::ErrorShareSpike && a.bucket == 600_000)
        );
    }
}
