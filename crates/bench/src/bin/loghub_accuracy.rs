//! Grouping and parsing accuracy of the template miner on Loghub 2k sets.
use std::collections::HashMap;

use opsloop_logs::miner::TemplateMiner;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/loghub-2k".into());
    let verbose = std::env::var("VERBOSE").is_ok();
    let mut sum = 0.0;
    let mut n = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let path = format!("{dir}/{name}/{name}_2k.log_structured.csv");
        let mut rdr = csv::Reader::from_path(&path)?;
        let headers = rdr.headers()?.clone();
        let ci = headers.iter().position(|h| h == "Content").unwrap_or(0);
        let ei = headers.iter().position(|h| h == "EventId").unwrap_or(0);
        let ti = headers
            .iter()
            .position(|h| h == "EventTemplate")
            .unwrap_or(0);
        let mut miner = TemplateMiner::default();
        let mut rows = Vec::new();
        for rec in rdr.records() {
            let rec = rec?;
            let a = miner.add(&rec[ci]);
            let a_id = a.id;
            rows.push((
                rec[ci].to_string(),
                rec[ei].to_string(),
                rec[ti].to_string(),
                a_id,
            ));
        }
        let mut truth: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut pred: HashMap<u64, Vec<usize>> = HashMap::new();
        for r in rows.iter_mut() {
            r.3 = miner.resolve(r.3).map(|t| t.id()).unwrap_or(r.3);
        }
        for (i, r) in rows.iter().enumerate() {
            truth.entry(&r.1).or_default().push(i);
            pred.entry(r.3.0).or_default().push(i);
        }
        let mut correct = 0;
        let mut pa = 0;
        for (i, r) in rows.iter().enumerate() {
            if truth[r.1.as_str()] == pred[&r.3.0] {
                correct += 1;
            }
            let t = miner
                .resolve(r.3)
                .map(|t| t.text().to_string())
                .unwrap_or_default();
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            if norm(&t) == norm(&r.2) {
                pa += 1;
            }
            let _ = i;
        }
        let ga = correct as f64 / rows.len() as f64;
        println!(
            "{name:10} GA {ga:.3} PA {:.3} templates {} truth {}",
            pa as f64 / rows.len() as f64,
            pred.len(),
            truth.len()
        );
        if verbose {
            // Show each wrong predicted group with its truth composition.
            let mut groups: Vec<_> = pred
                .iter()
                .filter(|(_, v)| truth[rows[v[0]].1.as_str()] != **v)
                .collect();
            groups.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
            for (k, v) in groups.iter().take(12) {
                let mut comp: HashMap<&str, usize> = HashMap::new();
                for &i in v.iter() {
                    *comp.entry(rows[i].2.as_str()).or_default() += 1;
                }
                println!(
                    "  PRED {} n={} : {}",
                    k,
                    v.len(),
                    miner
                        .resolve(opsloop_logs::miner::TemplateId(**k))
                        .map(|t| t.text())
                        .unwrap_or("")
                );
                for (t, c) in comp.iter().take(4) {
                    println!("      {c:4} {}", &t[..t.len().min(120)]);
                }
                let tt = rows[v[0]].1.as_str();
                println!("      truth group size {}", truth[tt].len());
            }
        }
        sum += ga;
        n += 1;
    }
    println!("average GA {:.3}", sum / n as f64);
    Ok(())
}
