//! When is each feed due: schedule parsing and next-due arithmetic.
//!
//! Input: a schedule string from the config (5-field crontab, `@hourly`-style macros,
//! or `every 20m`), the time now, and what the last poll came to. Output: instants.
//! Everything here is pure: `now` is always an argument.
//!
//! Cron expressions are evaluated in UTC. The `cron` crate underneath wants seconds
//! and counts weekdays from Sunday = 1, so a standard 5-field line is translated:
//! seconds fixed at 0, and the day-of-week field rewritten as day names (so `1` keeps
//! meaning Monday). Standard cron matches a day when *either* day-of-month or
//! day-of-week matches if both are restricted; the crate requires both, so such a line
//! becomes two schedules whose earliest next time wins.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

#[derive(Debug, Clone)]
pub enum Schedule {
    /// One or two cron schedules (two when day-of-month and day-of-week are both set).
    Cron { source: String, parts: Vec<cron::Schedule> },
    /// A fixed interval after the previous poll.
    Every(Duration),
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron { source, .. } => f.write_str(source),
            Schedule::Every(d) => write!(f, "every {}", format_duration(*d)),
        }
    }
}

/// The shortest interval `every` accepts: anything faster is abuse of the sources.
const MIN_INTERVAL: Duration = Duration::from_secs(60);

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses `*/15 * * * *`, `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`,
    /// `@annually`, `@midnight`, or `every 20m`.
    ///
    /// # Errors
    /// A message saying what is wrong with the expression.
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let s = input.trim();
        if let Some(rest) = s.strip_prefix("every ") {
            let d = parse_duration(rest.trim()).map_err(ScheduleError)?;
            if d < MIN_INTERVAL {
                return Err(ScheduleError(format!("'{s}': the shortest interval is 1m")));
            }
            return Ok(Schedule::Every(d));
        }
        let line = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(ScheduleError(format!(
                    "unknown schedule '{other}' (use @hourly, @daily, @weekly, @monthly, @yearly)"
                )));
            }
            other => other,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [min, hour, dom, mon, dow] = fields[..] else {
            return Err(ScheduleError(format!(
                "'{s}' has {} fields; a schedule is 5 cron fields (minute hour day month weekday), \
                 @hourly/@daily, or \"every 20m\"",
                fields.len()
            )));
        };
        let dow_names = translate_weekdays(dow).map_err(|e| ScheduleError(format!("'{s}': {e}")))?;
        let build = |dom: &str, dow: &str| {
            let expr = format!("0 {min} {hour} {dom} {mon} {dow}");
            expr.parse::<cron::Schedule>().map_err(|e| ScheduleError(format!("'{s}': {e}")))
        };
        let parts = if dom != "*" && dow != "*" {
            vec![build(dom, "*")?, build("*", &dow_names)?]
        } else {
            vec![build(dom, &dow_names)?]
        };
        Ok(Schedule::Cron { source: s.to_owned(), parts })
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => t + TimeDelta::from_std(*d).unwrap_or(TimeDelta::MAX),
            Schedule::Cron { parts, .. } => parts
                .iter()
                .filter_map(|p| p.after(&t).next())
                .min()
                // A valid expression that never fires again (Feb 30): try once a year.
                .unwrap_or(t + TimeDelta::days(365)),
        }
    }
}

/// Rewrites a standard day-of-week field (0-7, Sunday = 0 or 7, names, ranges, lists,
/// steps) as a list of day names, which the `cron` crate reads unambiguously.
fn translate_weekdays(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: usize = s.parse().map_err(|_| format!("bad step '{s}' in weekday field"))?;
                if step == 0 {
                    return Err("a step of 0 in weekday field".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (weekday(a)?, weekday(b)?)
        } else {
            let d = weekday(range)?;
            (d, if step > 1 { 6 } else { d })
        };
        // 7 is Sunday too; a range ending at 7 (5-7) runs through Sunday.
        if lo > hi {
            return Err(format!("weekday range '{range}' runs backwards"));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAY_NAMES.iter().zip(days).filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

fn weekday(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 { Ok(n) } else { Err(format!("weekday {n} is out of range 0-7")) };
    }
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s.get(..3).unwrap_or(s)) && s.len() >= 3)
        .ok_or_else(|| format!("'{s}' is not a weekday"))
}

/// Parses `30s`, `20m`, `6h`, `30d`, `2w` (whole numbers; units may be combined: `1h30m`).
///
/// # Errors
/// A message naming the bad input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("'{s}' is not a duration (examples: 30s, 20m, 6h, 30d)");
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = n.checked_mul(secs).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs(total))
}

/// The shortest spelling `parse_duration` reads back.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= n && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// Longest wait after failures, however many there were.
pub const BACKOFF_CAP: Duration = Duration::from_secs(6 * 3600);

/// When a feed is due next.
///
/// The later of its schedule slot and what the server asked for (`not_before`); after
/// `failures` consecutive failures, at least an exponential backoff (2 min doubling up
/// to [`BACKOFF_CAP`]). `jitter` in `[0, 1)` spreads feeds that share a cron slot
/// (by up to 30 s) or failed together (the backoff varies by ±25 %), so they do not
/// all hit at the same second.
pub fn next_due(
    now: DateTime<Utc>,
    schedule: &Schedule,
    failures: u32,
    not_before: Option<DateTime<Utc>>,
    jitter: f64,
) -> DateTime<Utc> {
    // Cron slots are shared by every feed on that schedule: spread them. Intervals
    // already run from each feed's own last poll, and a spread would make them drift.
    let spread = match schedule {
        Schedule::Cron { .. } => TimeDelta::milliseconds((jitter.clamp(0.0, 1.0) * 30_000.0) as i64),
        Schedule::Every(_) => TimeDelta::zero(),
    };
    let mut due = schedule.next_after(now) + spread;
    if failures > 0 {
        let base = 120u64.saturating_mul(1u64 << failures.min(20).saturating_sub(1));
        let backoff = base.min(BACKOFF_CAP.as_secs());
        let jittered = backoff as f64 * (0.75 + 0.5 * jitter.clamp(0.0, 1.0));
        due = due.max(now + TimeDelta::seconds(jittered as i64));
    }
    if let Some(nb) = not_before {
        due = due.max(nb);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn weekday_one_is_monday() {
        // 2026-11-29 is a Sunday.
        let s = Schedule::parse("0 9 * * 1").unwrap();
        let next = s.next_after(at(2026, 11, 29, 12, 0));
        assert_eq!(next, at(2026, 11, 30, 9, 0));
        assert_eq!(next.weekday(), Weekday::Mon);
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        let sat = at(2026, 11, 28, 12, 0);
        for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun"] {
            let next = Schedule::parse(expr).unwrap().next_after(sat);
            assert_eq!(next.weekday(), Weekday::Sun, "{expr}");
        }
        let s = Schedule::parse("0 9 * * 5-7").unwrap();
        let days: Vec<_> = std::iter::successors(Some(sat), |t| Some(s.next_after(*t)))
            .skip(1)
            .take(3)
            .map(|t| t.weekday())
            .collect();
        assert_eq!(days, [Weekday::Sun, Weekday::Fri, Weekday::Sat]);
    }

    #[test]
    fn weekday_ranges_and_steps() {
        assert_eq!(translate_weekdays("1-5").unwrap(), "MON,TUE,WED,THU,FRI");
        assert_eq!(translate_weekdays("*/2").unwrap(), "SUN,TUE,THU,SAT");
        assert_eq!(translate_weekdays("mon,fri").unwrap(), "MON,FRI");
        assert!(translate_weekdays("8").is_err());
        assert!(translate_weekdays("5-1").is_err());
    }

    #[test]
    fn every_fifteen_minutes_and_macros() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(s.next_after(at(2026, 1, 1, 10, 7)), at(2026, 1, 1, 10, 15));
        let h = Schedule::parse("@hourly").unwrap();
        assert_eq!(h.next_after(at(2026, 1, 1, 10, 7)), at(2026, 1, 1, 11, 0));
        let d = Schedule::parse("@daily").unwrap();
        assert_eq!(d.next_after(at(2026, 1, 1, 10, 7)), at(2026, 1, 2, 0, 0));
        let e = Schedule::parse("every 20m").unwrap();
        assert_eq!(e.next_after(at(2026, 1, 1, 10, 7)), at(2026, 1, 1, 10, 27));
    }

    #[test]
    fn day_of_month_or_weekday_as_in_crontab() {
        // The 1st of the month OR any Monday.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        let from = at(2026, 11, 25, 12, 0); // a Wednesday
        let n1 = s.next_after(from);
        assert_eq!((n1.day(), n1.weekday()), (30, Weekday::Mon));
        let n2 = s.next_after(n1);
        assert_eq!((n2.month(), n2.day()), (12, 1));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in ["* * * *", "0 0 0 0 0 0 0", "61 * * * *", "@fortnightly", "every 10s", "every soon"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        for bad in ["", "30", "s", "3x", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(1200)), "20m");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = Schedule::parse("every 1m").unwrap();
        let now = at(2026, 1, 1, 0, 0);
        let wait = |f| (next_due(now, &s, f, None, 0.5) - now).num_seconds();
        assert!(wait(1) >= 120 && wait(2) > wait(1) && wait(3) > wait(2));
        assert_eq!(wait(30), BACKOFF_CAP.as_secs() as i64);
        let later = now + TimeDelta::hours(2);
        assert_eq!(next_due(now, &s, 0, Some(later), 0.0), later);
        assert_eq!(next_due(now, &s, 0, None, 0.0).second(), 0);
    }
}
