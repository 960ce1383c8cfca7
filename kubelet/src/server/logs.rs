//! Container logs in the CRI format the runtime writes (`<RFC3339Nano> stdout|stderr F|P <text>`),
//! turned back into the container's output with the PodLogOptions of `kubectl logs`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// How often a followed log file is checked for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query parameters of /containerLogs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Only lines at or after this time (unix nanoseconds), from sinceSeconds or sinceTime.
    pub since_nanos: Option<i128>,
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T")
}

impl LogOptions {
    /// Parses the query string; errors name the bad parameter as upstream's validation does.
    pub fn parse(query: &str, now: SystemTime) -> Result<Self, String> {
        let mut o = LogOptions::default();
        let now_nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or_default();
        for (k, v) in query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            let v = percent_decode(v);
            match k {
                "follow" => o.follow = flag(&v),
                "previous" => o.previous = flag(&v),
                "timestamps" => o.timestamps = flag(&v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    if n < 0 {
                        return Err(
                            "tailLines: Invalid value: must be greater than or equal to 0".into(),
                        );
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    o.since_nanos = Some(now_nanos - i128::from(n) * 1_000_000_000);
                }
                "sinceTime" => {
                    o.since_nanos =
                        Some(parse_rfc3339(&v).ok_or_else(|| format!("invalid sinceTime {v:?}"))?);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Decodes `%XX` escapes and `+` (query-string values).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unix nanoseconds of an RFC 3339 time (`2024-01-02T03:04:05.123456789Z` or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let n: i128 = frac[..digits].parse().ok()?;
        nanos = n * 10i128.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[3..4], ":") => {
            let sign = match &rest[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One line of a CRI log file.
#[derive(Debug, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Splits `<timestamp> <stream> <tag> <content>` (the line without its newline).
pub fn parse_cri_line(line: &[u8]) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if !matches!(stream, "stdout" | "stderr") {
        return None;
    }
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    // The tag is a ':'-separated list whose first element is F (full) or P (partial).
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    Some(CriLine {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// Turns CRI lines into output, applying since, timestamps and limitBytes.
pub struct Formatter {
    opts: LogOptions,
    written: u64,
}

impl Formatter {
    pub fn new(opts: LogOptions) -> Self {
        Formatter { opts, written: 0 }
    }

    /// True once limitBytes is reached.
    pub fn done(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// The output for one complete file line (without its newline), empty when filtered out.
    pub fn format(&mut self, line: &[u8]) -> Vec<u8> {
        if self.done() {
            return Vec::new();
        }
        let Some(l) = parse_cri_line(line) else {
            return Vec::new();
        };
        if let Some(since) = self.opts.since_nanos {
            if parse_rfc3339(l.timestamp).is_some_and(|t| t < since) {
                return Vec::new();
            }
        }
        let mut out = Vec::with_capacity(l.content.len() + 40);
        if self.opts.timestamps {
            out.extend_from_slice(l.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(l.content);
        if !l.partial {
            out.push(b'\n');
        }
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.written) as usize;
            out.truncate(left);
        }
        self.written += out.len() as u64;
        out
    }
}

/// The complete lines of `data` (the last `tail` of them when given) and the bytes after the
/// last newline (a line the runtime is still writing).
pub fn complete_lines(data: &[u8], tail: Option<u64>) -> (Vec<&[u8]>, usize) {
    let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut lines: VecDeque<&[u8]> = VecDeque::new();
    for line in data[..end].split(|b| *b == b'\n') {
        lines.push_back(line);
        if let Some(t) = tail {
            if lines.len() as u64 > t + 1 {
                lines.pop_front();
            }
        }
    }
    // split() yields an empty piece after the final newline.
    lines.pop_back();
    if let Some(t) = tail {
        while lines.len() as u64 > t {
            lines.pop_front();
        }
    }
    (lines.into_iter().collect(), end)
}

/// Streams the log at `path` into `tx`; with follow, keeps reading until `running` says the
/// container stopped and the file has no more output, or the receiver is gone.
pub async fn stream<F, Fut>(
    path: PathBuf,
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
    running: F,
) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut file = tokio::fs::File::open(&path).await?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await?;
    let mut formatter = Formatter::new(opts.clone());
    let (lines, consumed) = complete_lines(&data, opts.tail_lines);
    let mut out = Vec::new();
    for line in lines {
        out.extend(formatter.format(line));
    }
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return Ok(());
    }
    if !opts.follow || formatter.done() {
        return Ok(());
    }
    let mut offset = consumed as u64;
    let mut pending: Vec<u8> = data[consumed..].to_vec();
    let mut idle = 0u32;
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        file.seek(std::io::SeekFrom::Start(offset + pending.len() as u64))
            .await?;
        let mut more = Vec::new();
        file.read_to_end(&mut more).await?;
        if more.is_empty() {
            idle += 1;
            // Check the container every second of silence, not on every poll.
            if idle % 5 == 0 && !running().await {
                // One last read: output written just before the exit.
                let mut last = Vec::new();
                file.read_to_end(&mut last).await?;
                if last.is_empty() {
                    return Ok(());
                }
                more = last;
            } else {
                continue;
            }
        }
        idle = 0;
        pending.extend_from_slice(&more);
        let (lines, used) = complete_lines(&pending, None);
        let mut out = Vec::new();
        for line in lines {
            out.extend(formatter.format(line));
        }
        offset += used as u64;
        pending.drain(..used);
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return Ok(());
        }
        if formatter.done() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02Z stderr F two\n\
2024-01-01T00:00:03.5Z stdout P thr\n\
2024-01-01T00:00:03.6Z stdout F ee\n\
2024-01-01T00:00:04+01:00 stdout F four\n\
2024-01-01T00:00:05Z stdout F fi";

    fn render(opts: LogOptions) -> String {
        let mut f = Formatter::new(opts.clone());
        let (lines, _) = complete_lines(LOG, opts.tail_lines);
        let out: Vec<u8> = lines.into_iter().flat_map(|l| f.format(l)).collect();
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn cri_lines_parse_and_partial_lines_are_reassembled() {
        let l = parse_cri_line(b"2024-01-01T00:00:03.5Z stdout P thr").expect("line");
        assert!(l.partial);
        assert_eq!(l.stream, "stdout");
        assert_eq!(l.content, b"thr");
        assert_eq!(
            parse_cri_line(b"2024-01-01T00:00:00Z stdout F ")
                .expect("empty")
                .content,
            b""
        );
        assert!(parse_cri_line(b"garbage").is_none());
        assert_eq!(render(LogOptions::default()), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn options_shape_the_output() {
        let cases: Vec<(&str, LogOptions, &str)> = vec![
            (
                "tail 2",
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                },
                "ee\nfour\n",
            ),
            (
                "tail 0",
                LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                },
                "",
            ),
            (
                "tail more than there is",
                LogOptions {
                    tail_lines: Some(50),
                    ..Default::default()
                },
                "one\ntwo\nthree\nfour\n",
            ),
            (
                "limit bytes",
                LogOptions {
                    limit_bytes: Some(6),
                    ..Default::default()
                },
                "one\ntw",
            ),
            (
                "since (the +01:00 line is an hour earlier)",
                LogOptions {
                    since_nanos: parse_rfc3339("2024-01-01T00:00:02Z"),
                    ..Default::default()
                },
                "two\nthree\n",
            ),
            (
                "timestamps",
                LogOptions {
                    timestamps: true,
                    tail_lines: Some(1),
                    ..Default::default()
                },
                "2024-01-01T00:00:04+01:00 four\n",
            ),
        ];
        for (name, opts, want) in cases {
            assert_eq!(render(opts), want, "{name}");
        }
    }

    #[test]
    fn rfc3339_times_convert_to_unix_nanos() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5Z"),
            Some(1_709_208_000_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(0),
            "offsets are applied"
        );
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn query_parameters_are_validated() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let o = LogOptions::parse(
            "follow=true&tailLines=3&timestamps=1&sinceSeconds=10&limitBytes=5",
            now,
        )
        .expect("valid");
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(5));
        assert_eq!(o.since_nanos, Some(990_000_000_000));
        let o = LogOptions::parse("sinceTime=1970-01-01T00%3A00%3A10Z", now).expect("valid");
        assert_eq!(o.since_nanos, Some(10_000_000_000));
        for bad in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "tailLines=x",
            "sinceTime=x",
        ] {
            assert!(LogOptions::parse(bad, now).is_err(), "{bad}");
        }
    }
}
