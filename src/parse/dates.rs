//! Feed dates: RFC 3339 (Atom, JSON Feed, `dc:date`) and RFC 2822 (RSS), as the
//! standards write them and in the ways feeds get them wrong.
//!
//! The well-formed dates, nearly all of them, go straight through chrono's parsers. Only
//! what those refuse goes through [`lenient`], which reads the date field by field.
//! (feed-rs's own parser rewrites every date with a series of regular expressions
//! before trying chrono: that was 6 % of all parsing, for dates that needed none.)

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, Utc};

/// The instant a feed's date names, or `None` if it names none we can read.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_rfc2822(t))
        .map(|d| d.to_utc())
        .ok()
        .or_else(|| lenient(t))
}

/// What feeds write instead of the standards:
/// - RFC 3339 with a space for `T`, no seconds, an offset without its colon or no
///   offset at all, or a date alone (midnight UTC);
/// - RFC 2822 with a weekday that is wrong, long, in another language or missing,
///   long month names, the month before the day, one-digit hours, an hour of 24
///   (taken as 0, as feeds that write it did not move the day on), "UTC", or no zone.
///
/// A date without a zone is taken as UTC. A word that is no English month, weekday or
/// zone (other than a weekday before the first comma, in any language) makes the text
/// unreadable: better no date than a wrong one.
fn lenient(t: &str) -> Option<DateTime<Utc>> {
    if t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') { iso(t) } else { written(t) }
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][zone]`.
fn iso(t: &str) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok()?;
    let rest = t.get(10..)?;
    let Some(rest) = rest.strip_prefix(['T', 't', ' ']) else {
        return rest.is_empty().then(|| date.and_time(NaiveTime::MIN).and_utc());
    };
    // The time runs up to the zone: a sign, a letter or a space.
    let end = rest
        .find(|c: char| c == '+' || c == '-' || c == ' ' || c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let time = clock(&rest[..end])?;
    let offset = zone(rest[end..].trim_start())?;
    finish(date.and_time(time), offset)
}

/// RFC 2822's order and its variants: words and numbers split at spaces and commas.
fn written(t: &str) -> Option<DateTime<Utc>> {
    // A word before the first comma is the weekday: it says nothing the date does not,
    // and is often in another language ("Lun,"), so whatever it is, it is skipped.
    let t = match t.split_once(',') {
        Some((word, rest)) if !word.is_empty() && word.chars().all(char::is_alphabetic) => rest,
        _ => t,
    };
    let (mut day, mut month, mut year, mut time, mut offset) = (None, None, None, None, None);
    let mut in_comment = false;
    for word in t.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        // A comment, such as the zone's name after its offset: "(CET)", "(Central
        // European Time)".
        if in_comment || word.starts_with('(') {
            in_comment = !word.ends_with(')');
            continue;
        }
        let first = word.as_bytes()[0];
        if word.contains(':') && first.is_ascii_digit() && time.is_none() {
            time = Some(clock(word)?);
        } else if word.bytes().all(|b| b.is_ascii_digit()) {
            let n: i32 = word.parse().ok()?;
            match word.len() {
                1 | 2 if day.is_none() => day = Some(u32::try_from(n).ok()?),
                // Two-digit years as RFC 2822 reads them.
                2 if year.is_none() => year = Some(if n < 50 { 2000 + n } else { 1900 + n }),
                4 if year.is_none() => year = Some(n),
                _ => return None,
            }
        } else if let Some(m) = month.is_none().then(|| month_of(word)).flatten() {
            month = Some(m);
        } else if day.is_none() && month.is_none() && is_weekday(word) {
            // Extraneous, and often wrong or in another spelling: ignored.
        } else if offset.is_none() {
            offset = Some(zone(word)?);
        } else {
            return None;
        }
    }
    let date = NaiveDate::from_ymd_opt(year?, month?, day?)?;
    finish(date.and_time(time.unwrap_or(NaiveTime::MIN)), offset.unwrap_or(Utc.fix()))
}

/// `H:MM`, `HH:MM:SS` or `HH:MM:SS.fraction`; an hour of 24 is 0.
fn clock(t: &str) -> Option<NaiveTime> {
    let mut parts = t.split(':');
    let hour: u32 = digits(parts.next()?, 1..=2)?;
    let minute: u32 = digits(parts.next()?, 2..=2)?;
    let (second, nanos) = match parts.next() {
        None => (0, 0),
        Some(s) => {
            let (whole, fraction) = s.split_once(['.', ',']).unwrap_or((s, ""));
            let nanos = if fraction.is_empty() {
                0
            } else {
                let f = fraction.get(..fraction.len().min(9))?;
                digits::<u32>(f, 1..=9)? * 10u32.pow(9 - f.len() as u32)
            };
            (digits(whole, 2..=2)?, nanos)
        }
    };
    if parts.next().is_some() {
        return None;
    }
    // A leap second is chrono's second 59 with a second's worth of nanoseconds more.
    let (second, nanos) = if second == 60 { (59, nanos + 1_000_000_000) } else { (second, nanos) };
    NaiveTime::from_hms_nano_opt(if hour == 24 { 0 } else { hour }, minute, second, nanos)
}

/// A zone: nothing or `Z` (UTC), a name RFC 2822 knows (its one-letter military zones
/// read as -0000, as it says) or "UTC", or `±HH`, `±HHMM`, `±HH:MM`.
fn zone(t: &str) -> Option<FixedOffset> {
    let t = t.trim_start_matches('(').trim_end_matches(')');
    let hours = |h: i32| FixedOffset::east_opt(h * 3600);
    if t.is_empty() {
        return Some(Utc.fix());
    }
    if let Some(sign) = t.strip_prefix('+').map(|_| 1).or_else(|| t.strip_prefix('-').map(|_| -1)) {
        let hhmm: String = t[1..].chars().filter(|c| *c != ':').collect();
        // `get`, not indexing: the text may hold characters of several bytes.
        let (h, m) = match hhmm.len() {
            2 => (digits::<i32>(&hhmm, 2..=2)?, 0),
            4 => (digits::<i32>(hhmm.get(..2)?, 2..=2)?, digits::<i32>(hhmm.get(2..)?, 2..=2)?),
            _ => return None,
        };
        if h > 23 || m > 59 {
            return None;
        }
        return FixedOffset::east_opt(sign * (h * 3600 + m * 60));
    }
    match t.to_ascii_uppercase().as_str() {
        "Z" | "UT" | "UTC" | "GMT" => hours(0),
        "EDT" => hours(-4),
        "EST" | "CDT" => hours(-5),
        "CST" | "MDT" => hours(-6),
        "MST" | "PDT" => hours(-7),
        "PST" => hours(-8),
        // Military zones are too often wrong to trust.
        m if m.len() == 1 && m != "J" && m.bytes().all(|b| b.is_ascii_uppercase()) => hours(0),
        _ => None,
    }
}

fn finish(local: NaiveDateTime, offset: FixedOffset) -> Option<DateTime<Utc>> {
    Some(local.and_local_timezone(offset).single()?.to_utc())
}

/// `t` as a number of `len` ASCII digits (no sign, no spaces).
fn digits<N: std::str::FromStr>(t: &str, len: std::ops::RangeInclusive<usize>) -> Option<N> {
    (len.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten()
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// 1–12 for a month name that starts as the English one does: "Nov", "November",
/// "Sept", also "Novembre" or "Juni" (the first three letters decide; weekdays never
/// start like a month).
fn month_of(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    let (head, rest) = (w.get(..3)?, w.get(3..)?);
    if !rest.chars().all(char::is_alphabetic) {
        return None;
    }
    MONTHS.iter().position(|m| m.starts_with(head)).and_then(|i| u32::try_from(i + 1).ok())
}

/// An English weekday name, short or long or in between ("Thu", "Thurs", "Thursday").
fn is_weekday(word: &str) -> bool {
    const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    w.len() >= 2 && DAYS.iter().any(|d| d.starts_with(&w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc())
    }

    #[test]
    fn standard_dates_read_as_chrono_reads_them() {
        for (text, want) in [
            ("2026-11-30T10:15:00Z", "2026-11-30T10:15:00Z"),
            ("2026-11-30T10:15:00.250+01:00", "2026-11-30T09:15:00.250Z"),
            ("  2026-11-30T10:15:00-05:00\n", "2026-11-30T15:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 GMT", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 +0130", "2026-11-30T08:45:00Z"),
            ("30 Nov 2026 10:15 EST", "2026-11-30T15:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 -0000", "2026-11-30T10:15:00Z"),
        ] {
            assert_eq!(parse(text), at(want), "{text:?}");
        }
    }

    #[test]
    fn what_feeds_write_instead_is_read_field_by_field() {
        for (text, want) in [
            // RFC 3339's variants.
            ("2026-11-30 10:15:00Z", "2026-11-30T10:15:00Z"),
            ("2026-11-30T10:15:00+0100", "2026-11-30T09:15:00Z"),
            ("2026-11-30T10:15:00+01", "2026-11-30T09:15:00Z"),
            ("2026-11-30T10:15+01:00", "2026-11-30T09:15:00Z"),
            ("2026-11-30T10:15:00", "2026-11-30T10:15:00Z"),
            ("2026-11-30T10:15:00 UTC", "2026-11-30T10:15:00Z"),
            ("2026-11-30", "2026-11-30T00:00:00Z"),
            // RFC 2822's.
            ("Tue, 30 Nov 2026 10:15:00 GMT", "2026-11-30T10:15:00Z"), // wrong weekday
            ("Monday, 30 Nov 2026 10:15:00 GMT", "2026-11-30T10:15:00Z"),
            ("Thurs, 26 Nov 2026 10:15:00 GMT", "2026-11-26T10:15:00Z"),
            ("Lundi, 30 Nov 2026 10:15:00 +0100", "2026-11-30T09:15:00Z"),
            ("30 Novembre 2026 10:15:00 +0100", "2026-11-30T09:15:00Z"),
            ("30 Nov 2026 9:15 +0100 (CET)", "2026-11-30T08:15:00Z"),
            ("30 Nov 2026 9:15 +0100 (Central European Time)", "2026-11-30T08:15:00Z"),
            ("30 Nov 2026 9:15 A", "2026-11-30T09:15:00Z"), // military zones read as -0000
            ("30 Nov 2026 23:59:60 +05:30", "2026-11-30T18:29:60Z"), // a leap second
            ("Mon, 30 November 2026 10:15:00 +0000", "2026-11-30T10:15:00Z"),
            ("Wed, 30 Sept 2026 10:15:00 +0000", "2026-09-30T10:15:00Z"),
            ("Mon, Nov 30 2026 10:15:00 +0000", "2026-11-30T10:15:00Z"),
            ("November 30, 2026 10:15:00 UTC", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026 9:15:00 +0000", "2026-11-30T09:15:00Z"),
            ("Mon, 30 Nov 2026 24:15:00 +0000", "2026-11-30T00:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 UTC", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 Z", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 +01:00", "2026-11-30T09:15:00Z"),
            ("Mon, 30 Nov 2026 10:15:00 pst", "2026-11-30T18:15:00Z"),
            ("30 Nov 26 10:15:00 +0000", "2026-11-30T10:15:00Z"),
            ("Mon, 30 Nov 2026", "2026-11-30T00:00:00Z"),
        ] {
            assert_eq!(parse(text), at(want), "{text:?}");
        }
    }

    #[test]
    fn what_names_no_date_reads_as_none() {
        for text in [
            "",
            "yesterday-ish",
            "soon",
            "Mon, 31 Nov 2026 10:15:00 GMT", // no 31st of November
            "Mon, 30 Nov 2026 25:15:00 GMT",
            "Mon, 30 Nov 2026 10:61:00 GMT",
            "Mon, 30 Nov 2026 10:15:00 Mars Standard Time",
            "Mon, 30 Foo 2026 10:15:00 GMT",
            "30 2026 10:15:00 GMT", // no month
            "Nov 2026",             // no day
            "2026-13-01T00:00:00Z",
            "2026-11-30T10:15:00+2500",
            "2026-11-30Tlunch",
            "Mon, 30 Nov 2026 10:15:00 +01:00:00:00",
            "1 2 3 4 5",
            "Mon, 30 Nov 2026 10:15:00 +1é1",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    /// Dates are third-party text: every combination of these pieces, multi-byte
    /// characters among them, reads as a date or as none, and never panics.
    #[test]
    fn any_text_reads_without_panicking() {
        let pieces = ["2026", "-", "11", "+", ":", "é", "1", "T", " ", "Nov", ",", "Z", "24", ".5", "ǅ"];
        let mut read = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let text = format!("{a}{b}{c}{d}{b}{a}");
                        read += usize::from(parse(&text).is_some());
                        let text = format!("Mon, 30 Nov 2026 10:{a}{b} {c}{d}");
                        read += usize::from(parse(&text).is_some());
                    }
                }
            }
        }
        assert!(read > 0);
    }

    /// feed-rs's own parser, on the date of an RSS item, less the dates feedsieve drops
    /// anyway as implausible (before 1990): it reads "30 Nov 26" as the year 26, where
    /// RFC 2822 (and [`parse`]) read 2026.
    fn feed_rs_date(text: &str) -> Option<DateTime<Utc>> {
        let xml =
            format!("<rss version=\"2.0\"><channel><item><pubDate>{text}</pubDate></item></channel></rss>");
        let date = feed_rs::parser::parse(xml.as_bytes()).unwrap().entries[0].published;
        date.filter(|d| d.timestamp() >= crate::parse::EARLIEST_DATE)
    }

    #[test]
    fn every_date_feed_rs_reads_is_read_the_same() {
        let mut texts = Vec::new();
        let weekdays =
            ["", "Mon, ", "mon, ", "MON, ", "Tue, ", "Monday, ", "Thurs, ", "Lun, ", "Sat. ", "Mon ", "Thu,"];
        let days = [
            ("30", "Nov"),
            ("3", "November"),
            ("03", "Sept"),
            ("29", "Feb"),
            ("30", "nov"),
            ("30", "NOV"),
            ("30", "Nov."),
            ("30", "Novembre"),
            ("1", "Dec"),
        ];
        for weekday in weekdays {
            for (day, month) in days {
                for date in [format!("{day} {month}"), format!("{month} {day}"), format!("{month} {day},")] {
                    for year in ["2026", "2024", "26", " 2026"] {
                        for time in ["10:15:00", "9:15:00", "24:15:00", "10:15", "10:15:00.5", "10:15:60", ""]
                        {
                            for zone in [
                                "GMT",
                                "gmt",
                                "+0100",
                                "-0000",
                                "+01",
                                "+05:30",
                                "UTC",
                                "Z",
                                "EST",
                                "A",
                                "+0100 (CET)",
                                "",
                            ] {
                                texts.push(format!("{weekday}{date} {year} {time} {zone}"));
                            }
                        }
                    }
                }
            }
        }
        for date in ["2026-11-30", "2026-02-30", "2026/11/30"] {
            for time in ["", "T10:15", "T10:15:00", "t10:15:00.123", " 10:15:00", "T10:15:00,5"] {
                for zone in ["", "Z", "z", "+01", "+0100", "+01:00", "-05", " +01:00", " UTC", "GMT"] {
                    texts.push(format!("{date}{time}{zone}"));
                }
            }
        }
        let mut read = 0;
        for text in &texts {
            let theirs = feed_rs_date(text);
            if theirs.is_some() {
                read += 1;
                assert_eq!(parse(text), theirs, "{text:?}");
            }
        }
        // Most of the combinations are no date to feed-rs either; the comparison means
        // something only if it read a good share (11,020 of 99,972 when written).
        assert!(read > texts.len() / 10, "feed-rs read {read} of {}", texts.len());
    }
}
