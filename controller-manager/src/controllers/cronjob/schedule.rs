//! Cron schedules as robfig/cron's standard parser reads them (5 fields, names, steps, macros,
//! `@every`, `CRON_TZ=`/`TZ=` prefixes), and the next fire time after an instant.

use std::time::Duration;

use k8s_openapi::chrono::{
    DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Timelike, Utc,
};

/// What was wrong with a schedule or time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A time zone this controller can compute in: UTC or a fixed offset from it (seconds east).
///
/// Zones with daylight-saving rules are not supported (no zone database is bundled); they are
/// reported as unknown, which upstream also does for zones its database lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    offset_secs: i64,
}

impl Zone {
    /// UTC.
    pub const UTC: Zone = Zone { offset_secs: 0 };

    /// Resolves an IANA name: the UTC aliases, `Local` (taken as UTC: the controller runs in UTC
    /// containers) and the fixed `Etc/GMT±N` zones (whose sign is inverted, as in the database).
    pub fn from_name(name: &str) -> Result<Zone, ScheduleError> {
        const UTC_ALIASES: &[&str] = &[
            "UTC",
            "Etc/UTC",
            "UCT",
            "Etc/UCT",
            "GMT",
            "Etc/GMT",
            "GMT0",
            "Etc/GMT0",
            "Etc/GMT+0",
            "Etc/GMT-0",
            "GMT+0",
            "GMT-0",
            "Greenwich",
            "Etc/Greenwich",
            "Universal",
            "Etc/Universal",
            "Zulu",
            "Etc/Zulu",
            "Local",
        ];
        if name.is_empty() || UTC_ALIASES.contains(&name) {
            return Ok(Zone::UTC);
        }
        let unknown = || ScheduleError::UnknownTimeZone(name.to_owned());
        let rest = name.strip_prefix("Etc/GMT").ok_or_else(unknown)?;
        let (sign, digits) = match rest.as_bytes().first() {
            Some(b'+') => (-1, &rest[1..]),
            Some(b'-') => (1, &rest[1..]),
            _ => return Err(unknown()),
        };
        let hours: i64 = digits.parse().map_err(|_| unknown())?;
        let max = if sign < 0 { 12 } else { 14 };
        if digits.starts_with('0') || !(1..=max).contains(&hours) {
            return Err(unknown());
        }
        Ok(Zone {
            offset_secs: sign * hours * 3600,
        })
    }

    fn to_local(self, t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc() + ChronoDuration::seconds(self.offset_secs)
    }

    fn to_utc(self, t: NaiveDateTime) -> DateTime<Utc> {
        (t - ChronoDuration::seconds(self.offset_secs)).and_utc()
    }

    /// `t` as RFC 3339 in this zone (for the scheduled-timestamp annotation).
    pub fn rfc3339(self, t: DateTime<Utc>) -> String {
        let local = self.to_local(t).format("%Y-%m-%dT%H:%M:%S");
        if self.offset_secs == 0 {
            return format!("{local}Z");
        }
        let sign = if self.offset_secs < 0 { '-' } else { '+' };
        let abs = self.offset_secs.abs();
        format!("{local}{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
    }
}

/// Bounds and names of one field.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// One field as a bit set; `star` marks a bare `*`/`?` (robfig's starBit), which changes how the
/// two day fields combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits {
    set: u64,
    star: bool,
}

impl Bits {
    fn has(self, v: u32) -> bool {
        self.set & (1u64 << v) != 0
    }
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    /// The zone named by a `CRON_TZ=`/`TZ=` prefix, if any.
    pub prefix_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron {
        minute: Bits,
        hour: Bits,
        dom: Bits,
        month: Bits,
        dow: Bits,
    },
    Every(Duration),
}

fn parse_int(expr: &str) -> Result<u32, ScheduleError> {
    if expr.is_empty() || !expr.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::Syntax(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax"
        )));
    }
    expr.parse().map_err(|_| {
        ScheduleError::Syntax(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range"
        ))
    })
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, ScheduleError> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        let i = u32::try_from(i).expect("at most 12 names");
        return Ok(i + b.min);
    }
    parse_int(expr)
}

fn parse_range(expr: &str, b: &Bounds) -> Result<Bits, ScheduleError> {
    let syntax = |m: String| Err(ScheduleError::Syntax(m));
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) if !s.contains('/') => (r, Some(s)),
        Some(_) => return syntax(format!("too many slashes: {expr}")),
        None => (expr, None),
    };
    let parts: Vec<&str> = range.split('-').collect();
    let (start, mut end, mut star) = if parts[0] == "*" || parts[0] == "?" {
        (b.min, b.max, true)
    } else {
        let start = int_or_name(parts[0], b)?;
        let end = match parts.len() {
            1 => start,
            2 => int_or_name(parts[1], b)?,
            _ => return syntax(format!("too many hyphens: {expr}")),
        };
        (start, end, false)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let s = parse_int(s)?;
            if parts.len() == 1 && !star {
                end = b.max;
            }
            if s > 1 {
                star = false;
            }
            s
        }
    };
    if start < b.min {
        return syntax(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return syntax(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return syntax(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return syntax(format!("step of range should be a positive number: {expr}"));
    }
    let mut set = 0u64;
    let mut v = start;
    while v <= end {
        set |= 1u64 << v;
        v += step;
    }
    Ok(Bits { set, star })
}

fn parse_field(field: &str, b: &Bounds) -> Result<Bits, ScheduleError> {
    let mut bits = Bits {
        set: 0,
        star: false,
    };
    for r in field.split(',') {
        let one = parse_range(r, b)?;
        bits.set |= one.set;
        bits.star |= one.star;
    }
    Ok(bits)
}

/// Go's `time.ParseDuration` for `@every`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    component_base::duration::parse_go_duration(s).ok()
}

impl Schedule {
    /// Parses as `cron.ParseStandard`.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        let syntax = |m: String| Err(ScheduleError::Syntax(m));
        let mut spec = spec.trim();
        if spec.is_empty() {
            return syntax("empty spec string".into());
        }
        let mut prefix_zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').expect("prefix has '='");
            let end = spec.find(' ').unwrap_or(spec.len());
            let name = &spec[eq + 1..end];
            Zone::from_name(name)?;
            prefix_zone = Some(name.to_owned());
            spec = spec[end..].trim();
        }
        let fields = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => {
                if let Some(d) = other.strip_prefix("@every ") {
                    let every = parse_go_duration(d.trim()).ok_or_else(|| {
                        ScheduleError::Syntax(format!("failed to parse duration {other}"))
                    })?;
                    // robfig rounds down to whole seconds with a one-second minimum.
                    let secs = every.as_secs().max(1);
                    return Ok(Schedule {
                        kind: Kind::Every(Duration::from_secs(secs)),
                        prefix_zone,
                    });
                }
                if other.starts_with('@') {
                    return syntax(format!("unrecognized descriptor: {other}"));
                }
                other
            }
        };
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return syntax(format!(
                "expected exactly 5 fields, found {}: {fields}",
                parts.len()
            ));
        }
        Ok(Schedule {
            kind: Kind::Cron {
                minute: parse_field(parts[0], &MINUTES)?,
                hour: parse_field(parts[1], &HOURS)?,
                dom: parse_field(parts[2], &DOM)?,
                month: parse_field(parts[3], &MONTHS)?,
                dow: parse_field(parts[4], &DOW)?,
            },
            prefix_zone,
        })
    }

    /// The first fire time strictly after `after`, or `None` if there is none in five years.
    pub fn next(&self, after: DateTime<Utc>, zone: Zone) -> Option<DateTime<Utc>> {
        let (minute, hour, dom, month, dow) = match &self.kind {
            Kind::Every(d) => {
                // Fires on whole seconds, `d` after the previous one.
                let base = after.with_nanosecond(0).unwrap_or(after);
                return Some(base + ChronoDuration::from_std(*d).ok()?);
            }
            Kind::Cron {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (*minute, *hour, *dom, *month, *dow),
        };
        let local = zone.to_local(after);
        let mut t = local.with_second(0)?.with_nanosecond(0)? + ChronoDuration::minutes(1);
        let limit = t.year() + 5;
        let day_matches = |t: &NaiveDateTime| {
            let d = dom.has(t.day());
            let w = dow.has(t.weekday().num_days_from_sunday());
            if dom.star || dow.star {
                d && w
            } else {
                d || w
            }
        };
        while t.year() <= limit {
            if !month.has(t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !day_matches(&t) {
                t = (t.date() + ChronoDuration::days(1)).and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !hour.has(t.hour()) {
                t = t.with_minute(0)? + ChronoDuration::hours(1);
                continue;
            }
            if !minute.has(t.minute()) {
                t += ChronoDuration::minutes(1);
                continue;
            }
            return Some(zone.to_utc(t));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn next_fire_times_follow_the_fields() {
        let cases = [
            (
                "every minute",
                "* * * * *",
                "2024-01-01T10:00:30Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "every minute on the minute",
                "*/1 * * * *",
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "every 15 minutes",
                "*/15 * * * *",
                "2024-01-01T10:16:00Z",
                "2024-01-01T10:30:00Z",
            ),
            (
                "range with step",
                "10-20/5 * * * *",
                "2024-01-01T10:16:00Z",
                "2024-01-01T10:20:00Z",
            ),
            (
                "list of hours",
                "0 3,15 * * *",
                "2024-01-01T04:00:00Z",
                "2024-01-01T15:00:00Z",
            ),
            (
                "month rollover",
                "0 0 1 * *",
                "2024-01-31T23:59:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "year rollover",
                "@yearly",
                "2024-06-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "named weekday",
                "30 9 * * mon",
                "2024-01-03T00:00:00Z",
                "2024-01-08T09:30:00Z",
            ),
            (
                "named month",
                "0 0 1 FEB *",
                "2024-03-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
            (
                "dom or dow when both restricted",
                "0 0 13 * 5",
                "2024-01-01T00:00:00Z",
                "2024-01-05T00:00:00Z",
            ),
            (
                "dom and dow when dow is a star",
                "0 0 13 * *",
                "2024-01-01T00:00:00Z",
                "2024-01-13T00:00:00Z",
            ),
            (
                "leap day",
                "0 0 29 2 *",
                "2025-01-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "hourly",
                "@hourly",
                "2024-01-01T10:59:59Z",
                "2024-01-01T11:00:00Z",
            ),
            (
                "daily",
                "@daily",
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            (
                "weekly is on sunday",
                "@weekly",
                "2024-01-01T00:00:00Z",
                "2024-01-07T00:00:00Z",
            ),
            (
                "every duration",
                "@every 90s",
                "2024-01-01T00:00:00.500Z",
                "2024-01-01T00:01:30Z",
            ),
        ];
        for (name, spec, after, want) in cases {
            let s = Schedule::parse(spec).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.next(at(after), Zone::UTC), Some(at(want)), "{name}");
        }
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        let s = Schedule::parse("0 0 30 2 *").expect("parses");
        assert_eq!(s.next(at("2024-01-01T00:00:00Z"), Zone::UTC), None);
    }

    #[test]
    fn bad_schedules_are_rejected_with_robfig_messages() {
        let cases = [
            ("empty", "", "empty spec string"),
            (
                "four fields",
                "* * * *",
                "expected exactly 5 fields, found 4: * * * *",
            ),
            (
                "minute too large",
                "60 * * * *",
                "end of range (60) above maximum (59): 60",
            ),
            (
                "reversed range",
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "zero step",
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            (
                "not a number",
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "unknown macro",
                "@fortnightly",
                "unrecognized descriptor: @fortnightly",
            ),
        ];
        for (name, spec, want) in cases {
            let err = Schedule::parse(spec).expect_err(name);
            assert_eq!(err.to_string(), want, "{name}");
        }
    }

    #[test]
    fn time_zones_shift_fire_times() {
        let s = Schedule::parse("CRON_TZ=Etc/GMT-2 0 9 * * *").expect("parses");
        assert_eq!(s.prefix_zone.as_deref(), Some("Etc/GMT-2"));
        let zone = Zone::from_name("Etc/GMT-2").expect("fixed zone");
        // 09:00 at UTC+2 is 07:00 UTC.
        assert_eq!(
            s.next(at("2024-01-01T08:00:00Z"), zone),
            Some(at("2024-01-02T07:00:00Z"))
        );
        assert_eq!(
            zone.rfc3339(Utc.with_ymd_and_hms(2024, 1, 2, 7, 0, 0).unwrap()),
            "2024-01-02T09:00:00+02:00"
        );
        assert_eq!(Zone::from_name("Etc/UTC"), Ok(Zone::UTC));
        assert!(matches!(
            Zone::from_name("Europe/Berlin"),
            Err(ScheduleError::UnknownTimeZone(_))
        ));
        assert!(Schedule::parse("TZ=Mars/Olympus * * * * *").is_err());
    }
}
