//! stats: what one scenario measured, medians and spreads, and the markdown report.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// CPU time used so far by this process (all threads).
pub fn process_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Which way is better for a figure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// What a row must show for ipop3d to meet its target.
#[derive(Clone, Copy)]
pub enum Target {
    /// ipop3d/Dovecot at most this.
    RatioAtMost(f64),
    /// ipop3d/Dovecot at least this.
    RatioAtLeast(f64),
    /// ipop3d's median below this absolute value.
    Below(f64),
    None,
}

#[derive(Clone, Copy)]
pub struct Row {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub target: Target,
    /// Whether the client's CPU share is meaningful for the row (not for RSS rows).
    pub timed: bool,
}

/// The columns: servers in report order.
pub const SERVERS: [&str; 3] = ["ipop3d", "Dovecot", "ipop3d w/o -D"];

#[derive(Default)]
pub struct Results {
    /// (row key, server index) -> values, one per run.
    values: BTreeMap<(&'static str, usize), Vec<f64>>,
    /// (row key, server index) -> highest client CPU share of a core seen.
    client_cpu: BTreeMap<(&'static str, usize), f64>,
    pub notes: Vec<String>,
}

impl Results {
    pub fn add(&mut self, key: &'static str, server: usize, value: f64) {
        self.values.entry((key, server)).or_default().push(value);
    }

    pub fn add_cpu(&mut self, key: &'static str, server: usize, cpu: Duration, wall: Duration) {
        let share = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
        let e = self.client_cpu.entry((key, server)).or_insert(0.0);
        *e = e.max(share);
    }

    fn median(&self, key: &str, server: usize) -> Option<(f64, f64, f64, usize)> {
        let v = self
            .values
            .iter()
            .find(|((k, s), _)| *k == key && *s == server)?
            .1;
        if v.is_empty() {
            return None;
        }
        let mut s = v.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let med = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some((med, s[0], s[n - 1], n))
    }

    /// The markdown report: one table, then the client-CPU check and notes.
    pub fn report(&self, rows: &[Row], header: &str) -> String {
        let mut out = String::new();
        out.push_str(header);
        out.push_str("\n| scenario | ipop3d | Dovecot | ipop3d/Dovecot | target | met? | ipop3d w/o `-D` | client CPU |\n");
        out.push_str("|---|---:|---:|---:|---|---|---:|---:|\n");
        let mut busy = Vec::new();
        for row in rows {
            let cells: Vec<Option<(f64, f64, f64, usize)>> = (0..SERVERS.len())
                .map(|s| self.median(row.key, s))
                .collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let fmt = |c: &Option<(f64, f64, f64, usize)>| match c {
                Some((m, lo, hi, n)) if *n > 1 => {
                    format!("{} ({}–{})", num(*m), num(*lo), num(*hi))
                }
                Some((m, ..)) => num(*m),
                None => "—".into(),
            };
            let ratio = match (&cells[0], &cells[1]) {
                (Some((a, ..)), Some((b, ..))) if *b > 0.0 => Some(a / b),
                _ => None,
            };
            let (target, met) = match row.target {
                Target::RatioAtMost(x) => (format!("≤ {x}×"), ratio.map(|r| r <= x)),
                Target::RatioAtLeast(x) => (format!("≥ {x}×"), ratio.map(|r| r >= x)),
                Target::Below(x) => (
                    format!("< {} {}", num(x), row.unit),
                    cells[0].map(|(m, ..)| m < x),
                ),
                Target::None => (String::new(), None),
            };
            let met = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let cpu = if row.timed {
                let worst = (0..SERVERS.len())
                    .filter_map(|s| self.client_cpu.get(&(row.key, s)).copied())
                    .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
                if let Some(w) = worst {
                    if w > 0.7 {
                        busy.push(format!("{} ({:.0} %)", row.label, w * 100.0));
                    }
                }
                worst.map_or(String::new(), |w| format!("{:.0} %", w * 100.0))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| {} ({}{}) | {} | {} | {} | {} | {} | {} | {} |\n",
                row.label,
                row.unit,
                if row.better == Better::Higher {
                    ", higher is better"
                } else {
                    ""
                },
                fmt(&cells[0]),
                fmt(&cells[1]),
                ratio.map_or("—".into(), |r| format!("{r:.2}")),
                target,
                met,
                fmt(&cells[2]),
                cpu,
            ));
        }
        out.push_str(
            "\nCells: median (min–max) over the runs. \"client CPU\": the most CPU the bench's \
             own client used, as a share of one core over the measured wall time (worst server, \
             worst run).\n",
        );
        if busy.is_empty() {
            out.push_str(
                "The client never used more than 70 % of a core: it was not the bottleneck.\n",
            );
        } else {
            out.push_str(&format!(
                "\n**Warning**: the client used more than 70 % of a core in: {}; those figures \
                 understate the faster server.\n",
                busy.join("; ")
            ));
        }
        for (server, name) in SERVERS.iter().enumerate() {
            let rss: Vec<f64> = rows
                .iter()
                .filter(|r| r.key.starts_with("d_rss"))
                .filter_map(|r| self.median(r.key, server).map(|m| m.0))
                .collect();
            if rss.len() > 1 {
                let lo = rss.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = rss.iter().copied().fold(0.0, f64::max);
                out.push_str(&format!(
                    "\n- {name}: peak RSS {} to {} MB across the (d) peak-RSS rows ({:.2}× spread{}).",
                    num(lo),
                    num(hi),
                    hi / lo,
                    if hi / lo <= 1.5 {
                        ", flat"
                    } else {
                        ", **not flat**"
                    }
                ));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("\n- {n}"));
        }
        out.push('\n');
        out
    }
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
