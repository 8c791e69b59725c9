//! The analysis every complete record goes through, whoever read it: [`Analyzer`] assigns the
//! record a template ([`TemplateMiner`]), matches rules ([`RuleSet`]) and watches for anomalies
//! ([`AnomalyDetector`]). [`crate::inspect::Inspector`] and [`crate::pipeline::LogPipeline`]
//! share it, so a record is analysed the same way in a one-shot inspection and in the agent;
//! each keeps its own bookkeeping of the [`Analysis`] it gets back.

use opsloop_core::{Event, Level};

use crate::anomaly::{Anomaly, AnomalyConfig, AnomalyDetector};
use crate::events::{self, Origin};
use crate::miner::{Assignment, MinerConfig, TemplateMiner};
use crate::parse::Record;
use crate::rules::{RuleContext, RuleHit, RuleSet};

/// Miner, rules and anomaly detection, with reused scratch buffers.
pub struct Analyzer {
    miner: TemplateMiner,
    rules: RuleSet,
    anomalies: AnomalyDetector,
    rule_hits: Vec<u64>,
    hits: Vec<RuleHit>,
    found: Vec<Anomaly>,
}

/// What [`Analyzer::analyze`] found for one record; borrowed until the next record.
pub struct Analysis<'a> {
    /// The record's template.
    pub assignment: Assignment,
    /// The template's text as it stands now.
    pub template: &'a str,
    /// Rules that fired (indexes into [`Analysis::rules`]).
    pub hits: &'a [RuleHit],
    /// Anomalies the record revealed.
    pub anomalies: &'a [Anomaly],
    /// The rule set the hits index.
    pub rules: &'a RuleSet,
    /// The miner, to resolve anomalies' templates.
    pub miner: &'a TemplateMiner,
}

impl Analysis<'_> {
    /// The findings as CloudEvents: one per rule hit, then one per anomaly.
    pub fn events(&self, origin: &Origin<'_>, rec: &Record, out: &mut Vec<Event>) {
        for h in self.hits {
            out.push(events::rule_matched(
                origin,
                &self.rules.rules()[h.rule],
                rec,
                self.assignment.id,
                self.template,
            ));
        }
        for an in self.anomalies {
            let text = an
                .template_id
                .and_then(|t| self.miner.resolve(t))
                .map(|t| t.text());
            out.push(events::anomaly(origin, an, rec, an.template_id, text));
        }
    }
}

impl Analyzer {
    /// An analyzer with `rules` and fresh miner and detector.
    pub fn new(rules: RuleSet, miner: MinerConfig, anomaly: AnomalyConfig) -> Analyzer {
        Analyzer {
            miner: TemplateMiner::new(miner),
            rule_hits: vec![0; rules.len()],
            rules,
            anomalies: AnomalyDetector::new(anomaly),
            hits: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Analyses one complete record.
    pub fn analyze(&mut self, rec: &Record) -> Analysis<'_> {
        let assignment = self.miner.add(&rec.message);
        let (template, generation) = self
            .miner
            .template(assignment.index)
            .map_or(("", 0), |t| (t.text(), t.generation()));
        self.hits.clear();
        if !self.rules.is_empty() {
            let ctx = RuleContext {
                template_id: assignment.id,
                template_key: (assignment.index, generation),
                template,
                timestamp: rec.timestamp,
            };
            self.rules.evaluate(rec, &ctx, &mut self.hits);
            for h in &self.hits {
                self.rule_hits[h.rule] += 1;
            }
        }
        self.found.clear();
        let is_error = rec.level.is_some_and(Level::is_error);
        self.anomalies.observe(
            assignment.id,
            assignment.created,
            rec.timestamp,
            is_error,
            &mut self.found,
        );
        Analysis {
            assignment,
            template,
            hits: &self.hits,
            anomalies: &self.found,
            rules: &self.rules,
            miner: &self.miner,
        }
    }

    /// Anomalies that only the end of input reveals.
    pub fn finish(&mut self, out: &mut Vec<Anomaly>) {
        self.anomalies.finish(out);
    }

    /// The miner.
    pub fn miner(&self) -> &TemplateMiner {
        &self.miner
    }

    /// The miner, e.g. to load a saved state.
    pub fn miner_mut(&mut self) -> &mut TemplateMiner {
        &mut self.miner
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The rules with their hit counts.
    pub fn rule_hits(&self) -> Vec<(&crate::rules::Rule, u64)> {
        self.rules
            .rules()
            .iter()
            .zip(self.rule_hits.iter().copied())
            .collect()
    }

    /// Hits per rule, in rule order.
    pub fn rule_hit_counts(&self) -> &[u64] {
        &self.rule_hits
    }

    /// Swaps in a new rule set (a configuration reload); hit counts carry over by rule id.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let old: rustc_hash::FxHashMap<&str, u64> = self
            .rules
            .rules()
            .iter()
            .zip(&self.rule_hits)
            .map(|(r, &h)| (r.spec.id.as_str(), h))
            .collect();
        self.rule_hits = rules
            .rules()
            .iter()
            .map(|r| old.get(r.spec.id.as_str()).copied().unwrap_or(0))
            .collect();
        self.rules = rules;
    }
}
