//! The text rendering of an inspection report.

use std::io::{self, Write};

use opsloop_logs::inspect::{Report, Seen};

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn short(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn place(s: &Seen) -> String {
    match &s.timestamp {
        Some(t) => format!("{}:{} ({t})", s.file, s.line),
        None => format!("{}:{}", s.file, s.line),
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn head(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn severity(&self, s: &str) -> String {
        let code = match s {
            "critical" => "1;31",
            "error" => "31",
            "warning" => "33",
            _ => "36",
        };
        if self.color {
            format!("\x1b[{code}m{s:<8}\x1b[0m")
        } else {
            format!("{s:<8}")
        }
    }
}

/// Writes the readable report. `color` adds ANSI styles (for a terminal).
pub fn report(out: &mut dyn Write, r: &Report, top: usize, color: bool) -> io::Result<()> {
    let st = Style { color };
    let s = &r.summary;
    writeln!(
        out,
        "{} {} file{}, {} lines, {} records, {} in {:.2} s ({} lines/s)",
        st.head("opsloop inspect:"),
        s.files,
        if s.files == 1 { "" } else { "s" },
        thousands(s.lines),
        thousands(s.records),
        human_bytes(s.bytes),
        s.elapsed_seconds,
        thousands(s.lines_per_second as u64),
    )?;
    for f in &r.files {
        match &f.error {
            Some(e) => writeln!(out, "  {}: ERROR {e}", f.path)?,
            None => writeln!(
                out,
                "  {}: {} format{}, {} records{}",
                f.path,
                f.format.as_str(),
                if f.detected { " (detected)" } else { "" },
                thousands(f.records),
                if f.problems > 0 {
                    format!(", {} problems", thousands(f.problems))
                } else {
                    String::new()
                },
            )?,
        }
    }
    if let (Some(a), Some(b)) = (&s.first_timestamp, &s.last_timestamp) {
        writeln!(out, "  time range: {a} .. {b}")?;
    }
    writeln!(out)?;

    let total = s.records.max(1) as f64;
    write!(out, "{}", st.head("LEVELS  "))?;
    let order = [
        "critical", "error", "warn", "notice", "info", "debug", "trace", "unknown",
    ];
    for name in order {
        if let Some(&n) = r.levels.get(name) {
            write!(
                out,
                "  {name} {} ({:.1}%)",
                thousands(n),
                100.0 * n as f64 / total
            )?;
        }
    }
    if s.levels_inferred > 0 {
        write!(
            out,
            "  ({} inferred from words)",
            thousands(s.levels_inferred)
        )?;
    }
    writeln!(out, "\n")?;

    writeln!(
        out,
        "{}",
        st.head(&format!(
            "TEMPLATES ({} in all, top {})",
            r.templates.len(),
            top.min(r.templates.len())
        ))
    )?;
    writeln!(
        out,
        "  {:>10}  {:>6}  {:<16}  template",
        "count", "share", "id"
    )?;
    for t in r.templates.iter().take(top) {
        writeln!(
            out,
            "  {:>10}  {:>5.1}%  {:<16}  {}",
            thousands(t.count),
            100.0 * t.share,
            t.id,
            short(&t.template, 100)
        )?;
        writeln!(
            out,
            "  {:>36}first {}  last {}",
            "",
            place(&t.first_seen),
            place(&t.last_seen)
        )?;
        if t.example != t.template {
            writeln!(out, "  {:>36}e.g. {}", "", short(&t.example, 100))?;
        }
    }
    writeln!(out)?;

    if !r.new_templates.is_empty() {
        writeln!(
            out,
            "{}",
            st.head(&format!(
                "NEW TEMPLATES after warm-up ({})",
                r.new_templates.len()
            ))
        )?;
        for id in r.new_templates.iter().take(top) {
            if let Some(t) = r.templates.iter().find(|t| &t.id == id) {
                writeln!(
                    out,
                    "  {}  {}  first {}",
                    t.id,
                    short(&t.template, 90),
                    place(&t.first_seen)
                )?;
            }
        }
        writeln!(out)?;
    }
    if !r.rare_templates.is_empty() {
        writeln!(
            out,
            "{}",
            st.head(&format!("RARE TEMPLATES ({})", r.rare_templates.len()))
        )?;
        for id in r.rare_templates.iter().take(top) {
            if let Some(t) = r.templates.iter().find(|t| &t.id == id) {
                writeln!(
                    out,
                    "  {:>4}x  {}  {}",
                    t.count,
                    t.id,
                    short(&t.template, 90)
                )?;
            }
        }
        writeln!(out)?;
    }

    if r.rule_hits.is_empty() {
        writeln!(
            out,
            "{}  none ({} rules loaded)\n",
            st.head("RULE HITS"),
            s.rules_loaded
        )?;
    } else {
        writeln!(
            out,
            "{}",
            st.head(&format!("RULE HITS ({} rules loaded)", s.rules_loaded))
        )?;
        for h in &r.rule_hits {
            writeln!(
                out,
                "  {} {:<24} {:>8}  {}",
                st.severity(h.severity.as_str()),
                h.rule,
                thousands(h.count),
                h.description
            )?;
            for e in &h.examples {
                writeln!(
                    out,
                    "  {:>44}{}:{}  {}",
                    "",
                    e.file,
                    e.line,
                    short(&e.message, 80)
                )?;
            }
        }
        writeln!(out)?;
    }

    if !r.anomalies.is_empty() {
        let counts: Vec<String> = r
            .anomaly_counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            out,
            "{}",
            st.head(&format!("ANOMALIES ({})", counts.join(", ")))
        )?;
        for a in r
            .anomalies
            .iter()
            .filter(|a| a.kind.as_str() != "new_template")
            .take(top)
        {
            let what = a.template_id.as_deref().unwrap_or("error share");
            writeln!(
                out,
                "  {:<18} {}  {what}: {:.3} vs baseline {:.3}",
                a.kind.as_str(),
                a.bucket,
                a.observed,
                a.baseline
            )?;
        }
        writeln!(out)?;
    }

    if !r.error_histogram.is_empty() {
        writeln!(out, "{}", st.head("ERRORS PER MINUTE"))?;
        let max = r
            .error_histogram
            .iter()
            .map(|m| m.errors)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut rows: Vec<_> = r.error_histogram.iter().collect();
        // Show the busiest minutes in time order when there are too many to list.
        if rows.len() > 30 {
            let mut by_count = rows.clone();
            by_count.sort_by_key(|m| std::cmp::Reverse(m.errors));
            let cutoff = by_count[29].errors;
            rows.retain(|m| m.errors >= cutoff);
            rows.truncate(30);
            writeln!(
                out,
                "  (the 30 busiest of {} minutes)",
                r.error_histogram.len()
            )?;
        }
        for m in rows {
            let width = ((m.errors as f64 / max as f64) * 40.0).ceil() as usize;
            writeln!(
                out,
                "  {}  {:<40} {}",
                &m.minute[..16],
                "#".repeat(width.max(1)),
                m.errors
            )?;
        }
        writeln!(out)?;
    }

    if r.problems.counts.is_empty() {
        writeln!(out, "{}  none", st.head("PROBLEMS"))?;
    } else {
        let counts: Vec<String> = r
            .problems
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect();
        writeln!(
            out,
            "{}",
            st.head(&format!("PROBLEMS ({})", counts.join(", ")))
        )?;
        for p in r.problems.examples.iter().take(top) {
            writeln!(
                out,
                "  {}:{}  {}  {}",
                p.file,
                p.line,
                p.kind.as_str(),
                p.detail
            )?;
        }
    }
    Ok(())
}
