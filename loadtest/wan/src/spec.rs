//! The impairment spec strings of the command line (`delay=115ms,loss=1%,rate=50mbit`)
//! and their resolution into a [`DirectionConfig`].
//!
//! A spec is parsed into a [`Spec`] whose keys are all optional, so that `--both` can
//! give the common settings and `--a-to-b` / `--b-to-a` override single keys
//! ([`Spec::overridden_by`]). Only the merged spec is resolved ([`Spec::resolve`]),
//! because a queue given as a time needs the rate of the same direction, which may come
//! from the other string.
//!
//! Units follow `tc` where `tc` has them: rates are decimal (`1mbit` = 1 000 000 bit/s),
//! byte sizes binary (`1kb` = 1024 bytes). Percentages must carry their `%` so that
//! `loss=0.01` cannot be read two ways.

use std::time::Duration;

use thiserror::Error;

/// Gilbert-Elliott parameters, each a probability in `[0, 1]`.
///
/// Two states, good and bad; before each packet the chain moves good → bad with
/// probability `p` and bad → good with probability `r`. A packet is lost with probability
/// `1 - k` in the good state and `1 - h` in the bad state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// P(good → bad), per packet.
    pub p: f64,
    /// P(bad → good), per packet.
    pub r: f64,
    /// P(a packet is delivered | bad state). `0` (the default) loses every packet there.
    pub h: f64,
    /// P(a packet is delivered | good state). `1` (the default) loses none there.
    pub k: f64,
}

impl GilbertElliott {
    /// Long-run fraction of packets lost: with the stationary probabilities
    /// `π_bad = p / (p + r)` and `π_good = r / (p + r)`,
    /// `loss = π_good · (1 - k) + π_bad · (1 - h)`.
    /// With `p = r = 0` the chain never leaves the good state.
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r == 0.0 {
            return 1.0 - self.k;
        }
        let bad = self.p / (self.p + self.r);
        (1.0 - bad) * (1.0 - self.k) + bad * (1.0 - self.h)
    }

    /// Mean number of consecutive packets spent in the bad state, `1 / r`: with `h = 0`
    /// and `k = 1` that is the mean length of a loss burst. Infinite when `r = 0`.
    pub fn mean_bad_run(&self) -> f64 {
        1.0 / self.r
    }
}

/// How large the bottleneck queue may grow before packets are tail-dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueLimit {
    /// A size in bytes.
    Bytes(u64),
    /// The time the queue takes to drain at the direction's rate.
    Time(Duration),
}

/// One spec string, every key optional. `None` means "not given here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    /// Probability in `[0, 1]`.
    pub loss: Option<f64>,
    /// `Some(None)`: explicitly off (`ge=off`).
    pub ge: Option<Option<GilbertElliott>>,
    /// Bits per second; `Some(None)`: explicitly unlimited (`rate=off`).
    pub rate: Option<Option<u64>>,
    /// `Some(None)`: explicitly unbounded (`queue=off`).
    pub queue: Option<Option<QueueLimit>>,
}

/// The impairment of one direction, resolved and checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirectionConfig {
    /// One-way propagation delay, added after serialisation.
    pub delay: Duration,
    /// Each packet's delay is drawn uniformly from `delay ± jitter` (at least zero), then
    /// raised if needed so it never departs before the packet ahead of it.
    pub jitter: Duration,
    /// Bernoulli loss probability in `[0, 1]`.
    pub loss: f64,
    /// Bursty loss, applied in addition to `loss`.
    pub ge: Option<GilbertElliott>,
    /// Bottleneck rate in bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Bottleneck queue bound in bytes; `None` leaves only the safety cap
    /// ([`crate::direction::MAX_HELD_BYTES`]).
    pub queue_bytes: Option<u64>,
}

/// What was wrong with a spec string. Every variant names the key and the value.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    #[error("`{item}` is not `key=value` (spec items are separated by commas)")]
    NotKeyValue { item: String },
    #[error("unknown key `{key}` (known keys: delay, jitter, loss, ge, rate, queue)")]
    UnknownKey { key: String },
    #[error("key `{key}` is given twice")]
    DuplicateKey { key: String },
    #[error("{key}={value}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("queue={queue}: a queue given as a time needs a rate in the same direction")]
    QueueTimeWithoutRate { queue: String },
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> SpecError {
    SpecError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn is_off(value: &str) -> bool {
    matches!(value, "off" | "none")
}

/// Splits `123.5ms` into (`123.5`, `ms`).
fn split_number(value: &str) -> (&str, &str) {
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    value.split_at(end)
}

fn parse_number(key: &str, value: &str, number: &str) -> Result<f64, SpecError> {
    let n: f64 = number
        .parse()
        .map_err(|_| bad(key, value, "expected a number first"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad(key, value, "expected a finite, non-negative number"));
    }
    Ok(n)
}

/// A duration: a number with `ns`, `us`, `ms` or `s`; a bare `0` is zero.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, SpecError> {
    let (number, unit) = split_number(value);
    let n = parse_number(key, value, number)?;
    let seconds = match unit {
        "ns" => n / 1e9,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "" if n == 0.0 => 0.0,
        "" => return Err(bad(key, value, "missing unit (ns, us, ms or s)")),
        _ => return Err(bad(key, value, "unknown unit (use ns, us, ms or s)")),
    };
    // Ten days is far beyond any WAN and keeps Instant arithmetic clear of overflow.
    if seconds > 864_000.0 {
        return Err(bad(key, value, "longer than ten days"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A probability written as a percentage: `1%`, `0.5%`, `100%`.
fn parse_percent(key: &str, value: &str) -> Result<f64, SpecError> {
    let Some(number) = value.strip_suffix('%') else {
        return Err(bad(key, value, "write a percentage such as 1% or 0.5%"));
    };
    let n = parse_number(key, value, number)?;
    if n > 100.0 {
        return Err(bad(key, value, "a percentage above 100%"));
    }
    Ok(n / 100.0)
}

/// A rate: `bit`, `kbit`, `mbit`, `gbit` (decimal, as in `tc`).
fn parse_rate(key: &str, value: &str) -> Result<u64, SpecError> {
    let (number, unit) = split_number(value);
    let n = parse_number(key, value, number)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "" => return Err(bad(key, value, "missing unit (bit, kbit, mbit or gbit)")),
        _ => {
            return Err(bad(
                key,
                value,
                "unknown unit (use bit, kbit, mbit or gbit)",
            ))
        }
    };
    let bps = n * scale;
    if bps < 1.0 {
        return Err(bad(
            key,
            value,
            "a rate below 1 bit/s (use rate=off for none)",
        ));
    }
    // 1 Tbit/s: beyond anything a userspace process forwards, and keeps the arithmetic
    // of serialisation times well inside u64 nanoseconds.
    if bps > 1e12 {
        return Err(bad(key, value, "a rate above 1000gbit"));
    }
    Ok(bps as u64)
}

/// A queue bound: bytes (`b`, `kb`, `mb`; binary as in `tc`) or a time (`ms`, `s`, ...).
fn parse_queue(key: &str, value: &str) -> Result<QueueLimit, SpecError> {
    let (number, unit) = split_number(value);
    let scale = match unit.to_ascii_lowercase().as_str() {
        "b" => Some(1.0),
        "kb" => Some(1024.0),
        "mb" => Some(1024.0 * 1024.0),
        _ => None,
    };
    match scale {
        Some(scale) => {
            let bytes = parse_number(key, value, number)? * scale;
            if bytes > 1e12 {
                return Err(bad(key, value, "a queue above a terabyte"));
            }
            Ok(QueueLimit::Bytes(bytes as u64))
        }
        None => parse_duration(key, value)
            .map(QueueLimit::Time)
            .map_err(|_| {
                bad(
                    key,
                    value,
                    "expected bytes (b, kb, mb) or a time (us, ms, s)",
                )
            }),
    }
}

/// `ge=p/r[/h[/k]]`, each a percentage.
fn parse_ge(key: &str, value: &str) -> Result<GilbertElliott, SpecError> {
    let parts: Vec<&str> = value.split('/').collect();
    if !(2..=4).contains(&parts.len()) {
        return Err(bad(key, value, "expected p/r[/h[/k]], e.g. ge=1%/30%"));
    }
    let mut ge = GilbertElliott {
        p: parse_percent(key, parts[0])?,
        r: parse_percent(key, parts[1])?,
        h: 0.0,
        k: 1.0,
    };
    if let Some(h) = parts.get(2) {
        ge.h = parse_percent(key, h)?;
    }
    if let Some(k) = parts.get(3) {
        ge.k = parse_percent(key, k)?;
    }
    Ok(ge)
}

impl Spec {
    /// Parses `key=value,key=value`. An empty string is a spec with no keys.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let mut spec = Spec::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(SpecError::NotKeyValue {
                    item: item.to_owned(),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            let duplicate = match key {
                "delay" => spec.delay.replace(parse_duration(key, value)?).is_some(),
                "jitter" => spec.jitter.replace(parse_duration(key, value)?).is_some(),
                "loss" => spec.loss.replace(parse_percent(key, value)?).is_some(),
                "ge" => {
                    let ge = if is_off(value) {
                        None
                    } else {
                        Some(parse_ge(key, value)?)
                    };
                    spec.ge.replace(ge).is_some()
                }
                "rate" => {
                    let rate = if is_off(value) {
                        None
                    } else {
                        Some(parse_rate(key, value)?)
                    };
                    spec.rate.replace(rate).is_some()
                }
                "queue" => {
                    let queue = if is_off(value) {
                        None
                    } else {
                        Some(parse_queue(key, value)?)
                    };
                    spec.queue.replace(queue).is_some()
                }
                _ => {
                    return Err(SpecError::UnknownKey {
                        key: key.to_owned(),
                    })
                }
            };
            if duplicate {
                return Err(SpecError::DuplicateKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(spec)
    }

    /// This spec with every key that `over` gives replaced by `over`'s value.
    pub fn overridden_by(&self, over: &Spec) -> Spec {
        Spec {
            delay: over.delay.or(self.delay),
            jitter: over.jitter.or(self.jitter),
            loss: over.loss.or(self.loss),
            ge: over.ge.or(self.ge),
            rate: over.rate.or(self.rate),
            queue: over.queue.or(self.queue),
        }
    }

    /// The configuration of one direction; keys not given are off (no delay, no loss,
    /// no rate limit, no queue bound).
    pub fn resolve(&self) -> Result<DirectionConfig, SpecError> {
        let rate_bps = self.rate.flatten();
        let queue_bytes = match self.queue.flatten() {
            None => None,
            Some(QueueLimit::Bytes(b)) => Some(b),
            Some(QueueLimit::Time(t)) => match rate_bps {
                Some(rate) => Some((t.as_secs_f64() * rate as f64 / 8.0) as u64),
                None => {
                    return Err(SpecError::QueueTimeWithoutRate {
                        queue: format!("{t:?}"),
                    })
                }
            },
        };
        Ok(DirectionConfig {
            delay: self.delay.unwrap_or_default(),
            jitter: self.jitter.unwrap_or_default(),
            loss: self.loss.unwrap_or(0.0),
            ge: self.ge.flatten(),
            rate_bps,
            queue_bytes,
        })
    }
}

impl std::fmt::Display for DirectionConfig {
    /// One line in spec syntax, e.g. `delay=115ms,jitter=2ms,loss=1%,rate=50mbit,queue=625000b`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delay={}ms,jitter={}ms,loss={}%",
            self.delay.as_secs_f64() * 1e3,
            self.jitter.as_secs_f64() * 1e3,
            self.loss * 100.0
        )?;
        if let Some(ge) = &self.ge {
            write!(
                f,
                ",ge={}%/{}%/{}%/{}%",
                ge.p * 100.0,
                ge.r * 100.0,
                ge.h * 100.0,
                ge.k * 100.0
            )?;
        }
        match self.rate_bps {
            Some(r) => write!(f, ",rate={}kbit", r as f64 / 1e3)?,
            None => write!(f, ",rate=off")?,
        }
        match self.queue_bytes {
            Some(q) => write!(f, ",queue={q}b"),
            None => write!(f, ",queue=off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_spec() {
        let spec = Spec::parse("delay=115ms,jitter=2ms,loss=1%,ge=1%/30%,rate=50mbit,queue=100ms")
            .unwrap();
        let config = spec.resolve().unwrap();
        assert_eq!(config.delay, Duration::from_millis(115));
        assert_eq!(config.jitter, Duration::from_millis(2));
        assert!((config.loss - 0.01).abs() < 1e-12);
        let ge = config.ge.unwrap();
        assert!((ge.p - 0.01).abs() < 1e-12 && (ge.r - 0.30).abs() < 1e-12);
        assert_eq!((ge.h, ge.k), (0.0, 1.0));
        assert_eq!(config.rate_bps, Some(50_000_000));
        // 100 ms at 50 Mbit/s = 625 000 bytes.
        assert_eq!(config.queue_bytes, Some(625_000));
    }

    #[test]
    fn units() {
        let d = |v| parse_duration("delay", v).unwrap();
        assert_eq!(d("1s"), Duration::from_secs(1));
        assert_eq!(d("250us"), Duration::from_micros(250));
        assert_eq!(d("1.5ms"), Duration::from_micros(1500));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(parse_rate("rate", "10Mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("rate", "1gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("rate", "64kbit").unwrap(), 64_000);
        assert_eq!(
            parse_queue("queue", "256kb").unwrap(),
            QueueLimit::Bytes(262_144)
        );
        assert_eq!(
            parse_queue("queue", "1500b").unwrap(),
            QueueLimit::Bytes(1500)
        );
        assert_eq!(
            parse_queue("queue", "20ms").unwrap(),
            QueueLimit::Time(Duration::from_millis(20))
        );
        let ge = parse_ge("ge", "0.5%/25%/10%/99%").unwrap();
        assert!((ge.h - 0.10).abs() < 1e-12 && (ge.k - 0.99).abs() < 1e-12);
    }

    #[test]
    fn override_replaces_only_given_keys() {
        let both = Spec::parse("delay=40ms,loss=1%,rate=10mbit,queue=50ms").unwrap();
        let a_to_b = Spec::parse("loss=2%,rate=20mbit").unwrap();
        let config = both.overridden_by(&a_to_b).resolve().unwrap();
        assert_eq!(config.delay, Duration::from_millis(40));
        assert!((config.loss - 0.02).abs() < 1e-12);
        // The queue time is converted at the overriding rate.
        assert_eq!(config.queue_bytes, Some(125_000));
        let off = Spec::parse("rate=off,queue=off").unwrap();
        let config = both.overridden_by(&off).resolve().unwrap();
        assert_eq!((config.rate_bps, config.queue_bytes), (None, None));
        assert_eq!(
            Spec::parse("").unwrap().resolve().unwrap(),
            DirectionConfig::default()
        );
    }

    #[test]
    fn errors_name_key_and_value() {
        let err = |s| Spec::parse(s).unwrap_err().to_string();
        assert!(err("loss=0.01").contains("loss=0.01"));
        assert!(err("loss=101%").contains("loss=101%"));
        assert!(err("delay=40").contains("delay=40"));
        assert!(err("delay=40m").contains("delay=40m"));
        assert!(err("delay=-4ms").contains("delay=-4ms"));
        assert!(err("rate=50mb").contains("rate=50mb"));
        assert!(err("rate=0mbit").contains("rate=0mbit"));
        assert!(err("queue=lots").contains("queue=lots"));
        assert!(err("ge=1%").contains("ge=1%"));
        assert!(err("ge=1%/2%/3%/4%/5%").contains("ge="));
        assert!(err("latency=4ms").contains("latency"));
        assert!(err("delay").contains("`delay`"));
        assert!(err("delay=1ms,delay=2ms").contains("twice"));
        assert!(err("delay=nanms").contains("delay=nanms"));
        assert!(err("delay=1e999s").contains("delay="));
        let no_rate = Spec::parse("queue=20ms").unwrap().resolve().unwrap_err();
        assert!(no_rate.to_string().contains("queue="));
    }

    #[test]
    fn ge_theory() {
        let ge = GilbertElliott {
            p: 0.01,
            r: 0.25,
            h: 0.0,
            k: 1.0,
        };
        assert!((ge.mean_loss() - 0.01 / 0.26).abs() < 1e-12);
        assert!((ge.mean_bad_run() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn display_round_trips() {
        let config =
            Spec::parse("delay=115ms,jitter=2ms,loss=1%,ge=1%/30%,rate=50mbit,queue=100ms")
                .unwrap()
                .resolve()
                .unwrap();
        let again = Spec::parse(&config.to_string()).unwrap().resolve().unwrap();
        assert_eq!(again.delay, config.delay);
        assert_eq!(again.rate_bps, config.rate_bps);
        assert_eq!(again.queue_bytes, config.queue_bytes);
    }
}
