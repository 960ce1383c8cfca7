//! Cron schedules as upstream parses them (robfig/cron's standard parser), for validation.

/// Bounds and names of one schedule field.
struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Go's `strconv.Atoi` followed by the parser's negative check, with its messages.
fn must_parse_int(expr: &str) -> Result<u32, String> {
    let atoi_err = |why: &str| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: {why}")
    };
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(atoi_err("invalid syntax"));
    }
    let n: i64 = expr.parse().map_err(|_| atoi_err("value out of range"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| atoi_err("value out of range"))
}

fn parse_int_or_name(expr: &str, f: &Field) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        // Month names count from 1, weekday names from 0.
        return Ok(i as u32 + if f.min == 1 { 1 } else { 0 });
    }
    must_parse_int(expr)
}

fn check_range(expr: &str, f: &Field) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (f.min, f.max)
    } else {
        let start = parse_int_or_name(low_high[0], f)?;
        let end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], f)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if low_high.len() == 1 {
                end = f.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < f.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            f.min
        ));
    }
    if end > f.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            f.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn check_field(field: &str, f: &Field) -> Result<(), String> {
    field
        .split(',')
        .filter(|r| !r.is_empty())
        .try_for_each(|r| check_range(r, f))
}

/// Go's `time.ParseDuration` syntax (`1h30m`, `90s`, `1.5h`).
fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 || rest[..num_len] == *"." {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(**u) && !(**u == "m" && rest.starts_with("ms")));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A time zone name that exists here (any name when no zone database is installed).
pub fn time_zone_exists(tz: &str) -> bool {
    if tz == "UTC" || tz == "Local" {
        return true;
    }
    let db = std::path::Path::new("/usr/share/zoneinfo");
    !db.is_dir() || db.join(tz).is_file()
}

/// Parses a schedule as `cron.ParseStandard` does; the error is upstream's message.
pub fn parse_standard(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let space = spec.find(' ').unwrap_or(spec.len());
        let tz = &spec[eq + 1..space];
        if !time_zone_exists(tz) {
            return Err(format!(
                "provided bad location {tz}: unknown time zone {tz}"
            ));
        }
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return match spec {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => match spec.strip_prefix("@every ") {
                Some(d) if is_go_duration(d) => Ok(()),
                Some(d) => Err(format!(
                    "failed to parse duration {spec}: time: invalid duration {d:?}"
                )),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in fields.iter().zip([&MINUTES, &HOURS, &DOM, &MONTHS, &DOW]) {
        check_field(field, bounds)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_like_robfig_cron() {
        struct Case {
            name: &'static str,
            spec: &'static str,
            want: Result<(), &'static str>,
        }
        let cases = [
            Case {
                name: "every minute",
                spec: "* * * * *",
                want: Ok(()),
            },
            Case {
                name: "steps and ranges",
                spec: "*/5 1-3,7 1 jan-mar MON-FRI",
                want: Ok(()),
            },
            Case {
                name: "question mark",
                spec: "0 0 ? * *",
                want: Ok(()),
            },
            Case {
                name: "start step",
                spec: "5/15 * * * *",
                want: Ok(()),
            },
            Case {
                name: "hourly",
                spec: "@hourly",
                want: Ok(()),
            },
            Case {
                name: "every",
                spec: "@every 1h30m",
                want: Ok(()),
            },
            Case {
                name: "bad every",
                spec: "@every soon",
                want: Err("failed to parse duration @every soon: time: invalid duration \"soon\""),
            },
            Case {
                name: "unknown descriptor",
                spec: "@sometimes",
                want: Err("unrecognized descriptor: @sometimes"),
            },
            Case {
                name: "four fields",
                spec: "* * * *",
                want: Err("expected exactly 5 fields, found 4: [* * * *]"),
            },
            Case {
                name: "minute too big",
                spec: "60 * * * *",
                want: Err("end of range (60) above maximum (59): 60"),
            },
            Case {
                name: "day zero",
                spec: "* * 0 * *",
                want: Err("beginning of range (0) below minimum (1): 0"),
            },
            Case {
                name: "word",
                spec: "x * * * *",
                want: Err(
                    "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
                ),
            },
            Case {
                name: "reversed",
                spec: "5-1 * * * *",
                want: Err("beginning of range (5) beyond end of range (1): 5-1"),
            },
            Case {
                name: "zero step",
                spec: "*/0 * * * *",
                want: Err("step of range should be a positive number: */0"),
            },
            Case {
                name: "too many hyphens",
                spec: "1-2-3 * * * *",
                want: Err("too many hyphens: 1-2-3"),
            },
            Case {
                name: "sunday seven",
                spec: "* * * * 7",
                want: Err("end of range (7) above maximum (6): 7"),
            },
        ];
        for c in cases {
            assert_eq!(
                parse_standard(c.spec),
                c.want.map_err(String::from),
                "{}",
                c.name
            );
        }
    }
}
