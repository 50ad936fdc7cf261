//! Breaker settings: the builder, its validation and the open wait.

use std::{error::Error, fmt, sync::Arc, time::Duration};

use streamgate_core::{
    state::{InProcess, SharedBreaker},
    BackendId, Classifier, DefaultClassifier, ErrorClass, MetricsSink, SharedSink,
};

use crate::{
    machine::{MachineConfig, MAX_COUNT_WINDOW, MAX_TIME_WINDOW},
    Breaker, BreakerRegistry,
};

/// How long the breaker stays open before it lets probes through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpenWait {
    /// Always the same wait.
    Fixed(Duration),
    /// `initial`, multiplied by `multiplier` for every further open without
    /// a close in between, capped at `max`; a close starts over at `initial`.
    Exponential {
        /// The first wait.
        initial: Duration,
        /// The factor per further open (at least 1).
        multiplier: f64,
        /// The longest wait.
        max: Duration,
    },
}

impl OpenWait {
    /// A wait that doubles with every open, from `initial` up to `max`.
    pub fn doubling(initial: Duration, max: Duration) -> Self {
        Self::Exponential {
            initial,
            multiplier: 2.0,
            max,
        }
    }

    /// The wait for the `opens`-th open since the last close (from 1).
    pub fn wait(&self, opens: u32) -> Duration {
        match *self {
            Self::Fixed(wait) => wait,
            Self::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let exponent = i32::try_from(opens.saturating_sub(1).min(1024)).unwrap_or(1024);
                let secs = initial.as_secs_f64() * multiplier.powi(exponent);
                Duration::try_from_secs_f64(secs).map_or(max, |wait| wait.min(max))
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Fixed(wait) if wait.is_zero() => {
                Err(ConfigError::new("open_wait", "must be longer than zero"))
            }
            Self::Fixed(_) => Ok(()),
            Self::Exponential {
                initial,
                multiplier,
                max,
            } => {
                if initial.is_zero() {
                    return Err(ConfigError::new(
                        "open_wait",
                        "initial wait must be longer than zero",
                    ));
                }
                if !multiplier.is_finite() || multiplier < 1.0 {
                    return Err(ConfigError::new(
                        "open_wait",
                        "multiplier must be a finite number of at least 1",
                    ));
                }
                if max < initial {
                    return Err(ConfigError::new(
                        "open_wait",
                        "max must not be shorter than the initial wait",
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Default for OpenWait {
    /// 30 s, as in the system this replaces.
    fn default() -> Self {
        Self::Fixed(Duration::from_secs(30))
    }
}

/// Which window the rate triggers read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowKind {
    /// The last N calls.
    Count(u32),
    /// N one-second buckets.
    Time(u32),
}

/// An invalid breaker setting, reported by `build()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    problem: &'static str,
}

impl ConfigError {
    fn new(setting: &'static str, problem: &'static str) -> Self {
        Self { setting, problem }
    }

    /// The builder method whose value is wrong.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker setting {}: {}",
            self.setting, self.problem
        )
    }
}

impl Error for ConfigError {}

/// A set of error classes, as a bit per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassSet(u16);

impl ClassSet {
    fn bit(class: ErrorClass) -> u16 {
        ErrorClass::ALL
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| 1 << i)
    }

    pub(crate) fn contains(self, class: ErrorClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    fn set(&mut self, class: ErrorClass, on: bool) {
        if on {
            self.0 |= Self::bit(class);
        } else {
            self.0 &= !Self::bit(class);
        }
    }

    fn of(classes: impl IntoIterator<Item = ErrorClass>) -> Self {
        let mut set = Self(0);
        for class in classes {
            set.set(class, true);
        }
        set
    }
}

/// The error classes that count as failures by default
/// ([`BreakerBuilder::counted_classes`] changes them).
pub const DEFAULT_COUNTED: [ErrorClass; 6] = [
    ErrorClass::Server,
    ErrorClass::Overloaded,
    ErrorClass::Timeout,
    ErrorClass::Network,
    ErrorClass::Truncated,
    ErrorClass::Other,
];

/// Validated settings shared by a breaker (or every breaker of a registry).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) machine: MachineConfig,
    pub(crate) classifier: Arc<dyn Classifier>,
    pub(crate) counted: ClassSet,
    pub(crate) honor_retry_after: bool,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) sink: SharedSink,
    /// What the replicas of a fleet agree on; [`InProcess`] by default.
    pub(crate) shared: Arc<dyn SharedBreaker>,
    /// How long a fleet-wide probe lease holds without an outcome.
    pub(crate) probe_lease: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("machine", &self.machine)
            .field("counted", &self.counted)
            .field("honor_retry_after", &self.honor_retry_after)
            .field("slow_threshold", &self.slow_threshold)
            .field("sink", &self.sink.is_some())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Breaker`] (or a per-model [`BreakerRegistry`]).
///
/// Defaults, unless a method says otherwise:
/// - trigger: 3 failures within 60 s, open for a fixed 30 s, then 1 probe —
///   the defaults of the system this replaces; no rate, consecutive-failure
///   or slow-call trigger;
/// - window for the rate triggers: the last 100 calls, at least 10 calls
///   before a rate is judged (resilience4j's window size; a lower minimum
///   because LLM backends see few calls);
/// - counted classes: server, overloaded, timeout, network, truncated and
///   other (unknown errors count, as in most breakers); client, context
///   length, content filter, rejected and cancelled do not; rate limited
///   opens exactly until the provider's reset when the error carries one and
///   is otherwise ignored;
/// - an error that says when to retry opens exactly until then when it trips
///   the breaker ([`honor_retry_after`](Self::honor_retry_after));
/// - no open shorter than 1 s ([`minimum_open`](Self::minimum_open)), so a
///   provider's `Retry-After: 0` cannot open the breaker for no time;
/// - no provider-supplied wait honoured for longer than 1 hour
///   ([`max_wait`](Self::max_wait)), so one `Retry-After: 999999999` cannot
///   take the backend out for decades;
/// - half-open for at most 120 s without a verdict
///   ([`half_open_max_wait`](Self::half_open_max_wait)), so a probe that
///   hangs cannot hold the breaker half-open;
/// - classification by [`DefaultClassifier`]; no sink.
#[must_use]
pub struct BreakerBuilder {
    backend: BackendId,
    sink: SharedSink,
    classifier: Arc<dyn Classifier>,
    counted: ClassSet,
    honor_retry_after: bool,
    window: WindowKind,
    failure_rate: Option<f64>,
    slow: Option<(f64, Duration)>,
    minimum_calls: u32,
    consecutive_failures: Option<u32>,
    failures_within: Option<(u32, Duration)>,
    open_wait: OpenWait,
    probes: u32,
    half_open_max_wait: Option<Duration>,
    minimum_open: Duration,
    max_wait: Duration,
    model_cap: usize,
    shared: Option<Arc<dyn SharedBreaker>>,
}

/// The default [`BreakerBuilder::max_wait`]: 1 hour, as for the quota
/// tracker. No per-minute or per-hour limit needs a longer wait.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(3600);

/// The default [`BreakerBuilder::minimum_open`].
pub const DEFAULT_MINIMUM_OPEN: Duration = Duration::from_secs(1);

/// The default [`BreakerBuilder::half_open_max_wait`]: long enough for most
/// probe streams to end, short enough that a hung probe frees the breaker.
pub const DEFAULT_HALF_OPEN_MAX_WAIT: Duration = Duration::from_secs(120);

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("backend", &self.backend)
            .field("window", &self.window)
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("minimum_calls", &self.minimum_calls)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failures_within", &self.failures_within)
            .field("open_wait", &self.open_wait)
            .field("probes", &self.probes)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("minimum_open", &self.minimum_open)
            .field("max_wait", &self.max_wait)
            .field("model_cap", &self.model_cap)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    pub(crate) fn new(backend: BackendId) -> Self {
        Self {
            backend,
            sink: None,
            classifier: Arc::new(DefaultClassifier),
            counted: ClassSet::of(DEFAULT_COUNTED),
            honor_retry_after: true,
            window: WindowKind::Count(100),
            failure_rate: None,
            slow: None,
            minimum_calls: 10,
            consecutive_failures: None,
            failures_within: Some((3, Duration::from_secs(60))),
            open_wait: OpenWait::default(),
            probes: 1,
            half_open_max_wait: Some(DEFAULT_HALF_OPEN_MAX_WAIT),
            minimum_open: DEFAULT_MINIMUM_OPEN,
            max_wait: DEFAULT_MAX_WAIT,
            model_cap: streamgate_core::keyed::DEFAULT_MODEL_CAP,
            shared: None,
        }
    }

    /// Opens when at least the `fraction` of the calls in the window failed
    /// (inclusive), once the window holds [`minimum_calls`](Self::minimum_calls).
    ///
    /// A fraction above 0 and at most 1: `0.5` for half the calls. A
    /// percentage such as `50.0` is refused by `build()`, as is 0, a
    /// negative number or NaN.
    pub fn failure_rate(mut self, fraction: f64) -> Self {
        self.failure_rate = Some(fraction);
        self
    }

    /// Opens when at least the `fraction` (above 0, at most 1, as for
    /// [`failure_rate`](Self::failure_rate)) of the calls in the window were slow:
    /// their first content came later than `threshold` after the call (a
    /// call that ended without content is slow if it took that long). A slow
    /// half-open probe counts as a failed one.
    pub fn slow_call_rate(mut self, fraction: f64, threshold: Duration) -> Self {
        self.slow = Some((fraction, threshold));
        self
    }

    /// Calls the window must hold before a rate is judged (default 10).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// The rate triggers read the last `calls` calls (the default, with 100).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = WindowKind::Count(calls);
        self
    }

    /// The rate triggers read the calls that ended in the last `seconds`
    /// one-second buckets. Counts in one bucket saturate at 8191 calls.
    pub fn time_window(mut self, seconds: u32) -> Self {
        self.window = WindowKind::Time(seconds);
        self
    }

    /// Opens after `failures` failures in a row (a success starts over).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Opens when `failures` failures happened within `window` (the first
    /// and the last at most `window` apart). Default: 3 within 60 s.
    pub fn failures_within(mut self, failures: u32, window: Duration) -> Self {
        self.failures_within = Some((failures, window));
        self
    }

    /// Turns off the "failures within a window" trigger, for breakers that
    /// only use the rate or consecutive triggers.
    pub fn without_failures_within(mut self) -> Self {
        self.failures_within = None;
        self
    }

    /// How long to stay open (default: a fixed 30 s).
    pub fn open_wait(mut self, wait: OpenWait) -> Self {
        self.open_wait = wait;
        self
    }

    /// Whether an error that says when to retry (a 429's reset, a
    /// `Retry-After`) opens exactly until then instead of for the open wait
    /// (default true). When false, a rate-limited error is ignored unless
    /// its class is [counted](Self::count_class).
    pub fn honor_retry_after(mut self, honor: bool) -> Self {
        self.honor_retry_after = honor;
        self
    }

    /// Probes let through in half-open; that many successes close the
    /// breaker (default 1).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// The longest the breaker stays half-open without a verdict. When the
    /// probes have neither succeeded nor failed by then, it opens again for
    /// the open wait (a backend that cannot answer a probe in time is not
    /// healthy), and the late probes' outcomes are ignored. Default
    /// [`DEFAULT_HALF_OPEN_MAX_WAIT`] (120 s): the verdict comes at the end
    /// of the probe's stream, so allow for a long answer.
    pub fn half_open_max_wait(mut self, wait: Duration) -> Self {
        self.half_open_max_wait = Some(wait);
        self
    }

    /// Lets a half-open probe run as long as it takes (only a drop or its
    /// end frees the half-open state).
    pub fn without_half_open_max_wait(mut self) -> Self {
        self.half_open_max_wait = None;
        self
    }

    /// The shortest time the breaker opens for, whatever the configured wait
    /// or a provider's `Retry-After` says (default [`DEFAULT_MINIMUM_OPEN`],
    /// 1 s; must be above zero). A `Retry-After: 0` on a tripping error then
    /// opens for this long instead of not at all.
    pub fn minimum_open(mut self, wait: Duration) -> Self {
        self.minimum_open = wait;
        self
    }

    /// The longest wait a provider may impose (a tripping error's
    /// `Retry-After`, a 429's reset): a longer one opens the breaker for
    /// this long instead, and the [`BreakerTransition`] event and the
    /// [`Snapshot`](crate::Snapshot) say so (`wait_capped`). Default
    /// [`DEFAULT_MAX_WAIT`] (1 hour); must not be below the
    /// [`minimum_open`](Self::minimum_open). The configured
    /// [`open_wait`](Self::open_wait) is not cut.
    ///
    /// [`BreakerTransition`]: streamgate_core::Event::BreakerTransition
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// Whether failures of `class` count (see the defaults above).
    pub fn count_class(mut self, class: ErrorClass, counts: bool) -> Self {
        self.counted.set(class, counts);
        self
    }

    /// Exactly these classes count as failures.
    pub fn counted_classes(mut self, classes: impl IntoIterator<Item = ErrorClass>) -> Self {
        self.counted = ClassSet::of(classes);
        self
    }

    /// Classifies errors with `classifier` instead of [`DefaultClassifier`];
    /// a closure `Fn(&(dyn Error + 'static)) -> ErrorClass` will do.
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Reports transitions and rejections to `sink`.
    pub fn sink(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Shares the circuit with other replicas through `state` (for
    /// example `streamgate-redis`): an open is published with its
    /// open-until time and refuses on every replica; a half-open probe
    /// first takes the fleet's probe lease (held at most
    /// [`half_open_max_wait`](Self::half_open_max_wait), 120 s without
    /// one), so one replica probes; its outcome is published. The window
    /// that counts outcomes stays each replica's own. Without it the
    /// circuit is this process's alone ([`InProcess`]).
    pub fn shared(mut self, state: Arc<dyn SharedBreaker>) -> Self {
        self.shared = Some(state);
        self
    }

    /// A breaker shared by every clone of its handle and of its layer.
    pub fn build(self) -> Result<Breaker, ConfigError> {
        let (backend, settings) = self.settings()?;
        Ok(Breaker::from_settings(backend, None, Arc::new(settings)))
    }

    /// For [`build_registry`](Self::build_registry): the most models that
    /// get a breaker of their own (default 32, at least 1); every further
    /// model shares one breaker, reported under the model `_OTHER`, so
    /// made-up model names cannot grow memory.
    pub fn model_cap(mut self, cap: usize) -> Self {
        self.model_cap = cap;
        self
    }

    /// A registry with one breaker per model, each with these settings.
    pub fn build_registry(self) -> Result<BreakerRegistry, ConfigError> {
        let cap = self.model_cap;
        let (backend, settings) = self.settings()?;
        Ok(BreakerRegistry::from_settings(backend, settings, cap))
    }

    fn settings(self) -> Result<(BackendId, Settings), ConfigError> {
        self.validate()?;
        Ok(self.into_settings())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fraction = |setting, value: Option<f64>| match value {
            Some(f) if f.is_finite() && f > 1.0 && f <= 100.0 => Err(ConfigError::new(
                setting,
                "must be a fraction above 0 and at most 1 (0.5 for half), not a percentage",
            )),
            Some(f) if !(f.is_finite() && f > 0.0 && f <= 1.0) => Err(ConfigError::new(
                setting,
                "must be a fraction above 0 and at most 1",
            )),
            _ => Ok(()),
        };
        fraction("failure_rate", self.failure_rate)?;
        fraction("slow_call_rate", self.slow.map(|(f, _)| f))?;
        if self.slow.is_some_and(|(_, t)| t.is_zero()) {
            return Err(ConfigError::new(
                "slow_call_rate",
                "threshold must be longer than zero",
            ));
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1"));
        }
        let rates = self.failure_rate.is_some() || self.slow.is_some();
        match self.window {
            WindowKind::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => {
                return Err(ConfigError::new(
                    "count_window",
                    "must hold 1 to 100000 calls",
                ));
            }
            WindowKind::Count(n) if rates && self.minimum_calls > n => {
                return Err(ConfigError::new(
                    "minimum_calls",
                    "must not exceed the count window, or the rate is never judged",
                ));
            }
            WindowKind::Time(n) if n == 0 || n > MAX_TIME_WINDOW => {
                return Err(ConfigError::new(
                    "time_window",
                    "must span 1 to 3600 seconds",
                ));
            }
            _ => {}
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if let Some((k, within)) = self.failures_within {
            if k == 0 || k > 10_000 {
                return Err(ConfigError::new(
                    "failures_within",
                    "must count 1 to 10000 failures",
                ));
            }
            if within.is_zero() {
                return Err(ConfigError::new(
                    "failures_within",
                    "window must be longer than zero",
                ));
            }
        }
        self.open_wait.validate()?;
        if self.probes == 0 {
            return Err(ConfigError::new("half_open_probes", "must be at least 1"));
        }
        if self.model_cap == 0 {
            return Err(ConfigError::new("model_cap", "must be at least 1"));
        }
        if self.minimum_open.is_zero() {
            return Err(ConfigError::new("minimum_open", "must be longer than zero"));
        }
        if self.max_wait < self.minimum_open {
            return Err(ConfigError::new(
                "max_wait",
                "must not be shorter than the minimum open",
            ));
        }
        if self.half_open_max_wait.is_some_and(|w| w.is_zero()) {
            return Err(ConfigError::new(
                "half_open_max_wait",
                "must be longer than zero",
            ));
        }
        Ok(())
    }

    /// The settings, assuming they are valid (the defaults are).
    pub(crate) fn into_settings(self) -> (BackendId, Settings) {
        // Hundredths of a percent, compared in integers so that a threshold
        // is exactly inclusive.
        let hundredths = |f: f64| (f * 10_000.0).round().clamp(1.0, 10_000.0) as u32;
        let slow_threshold = self.slow.map(|(_, t)| t);
        let machine = MachineConfig {
            window: self.window,
            failure_rate: self.failure_rate.map(hundredths),
            slow_rate: self.slow.map(|(p, _)| hundredths(p)),
            minimum_calls: self.minimum_calls,
            consecutive_failures: self.consecutive_failures,
            failures_within: self.failures_within,
            open_wait: self.open_wait,
            probes: self.probes,
            half_open_max_wait: self.half_open_max_wait,
            minimum_open: self.minimum_open,
            max_wait: self.max_wait,
            slow_probe_fails: slow_threshold.is_some(),
        };
        let settings = Settings {
            machine,
            classifier: self.classifier,
            counted: self.counted,
            honor_retry_after: self.honor_retry_after,
            slow_threshold,
            sink: self.sink,
            shared: self.shared.unwrap_or_else(|| Arc::new(InProcess)),
            probe_lease: self
                .half_open_max_wait
                .unwrap_or(DEFAULT_HALF_OPEN_MAX_WAIT),
        };
        (self.backend, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> BreakerBuilder {
        BreakerBuilder::new(BackendId::new("b"))
    }

    #[test]
    fn invalid_settings_are_reported_by_name() {
        let setting = |b: BreakerBuilder| b.build().err().map(|e| e.setting());
        assert_eq!(setting(builder().failure_rate(0.0)), Some("failure_rate"));
        assert_eq!(setting(builder().failure_rate(1.5)), Some("failure_rate"));
        assert_eq!(
            setting(builder().failure_rate(f64::NAN)),
            Some("failure_rate")
        );
        assert_eq!(setting(builder().count_window(0)), Some("count_window"));
        assert_eq!(
            setting(builder().failure_rate(0.5).count_window(5).minimum_calls(6)),
            Some("minimum_calls")
        );
        assert_eq!(setting(builder().time_window(0)), Some("time_window"));
        assert_eq!(
            setting(builder().half_open_probes(0)),
            Some("half_open_probes")
        );
        assert_eq!(
            setting(builder().open_wait(OpenWait::Exponential {
                initial: Duration::from_secs(2),
                multiplier: 0.5,
                max: Duration::from_secs(10)
            })),
            Some("open_wait")
        );
        assert_eq!(
            setting(builder().failures_within(0, Duration::from_secs(1))),
            Some("failures_within")
        );
        assert_eq!(setting(builder()), None);
    }

    #[test]
    fn a_percentage_where_a_fraction_belongs_is_refused_and_says_so() {
        for rate in [50.0, 100.0, 2.0] {
            let err = builder().failure_rate(rate).build().err();
            assert_eq!(
                err.map(|e| e.to_string()),
                Some(
                    "invalid circuit breaker setting failure_rate: must be a fraction above 0 \
                     and at most 1 (0.5 for half), not a percentage"
                        .to_owned()
                ),
                "{rate}"
            );
        }
        let slow = builder()
            .slow_call_rate(50.0, Duration::from_secs(1))
            .build()
            .err();
        assert_eq!(slow.map(|e| e.setting()), Some("slow_call_rate"));
        let settings = builder().failure_rate(0.5).into_settings().1;
        assert_eq!(settings.machine.failure_rate, Some(5_000));
        assert!(builder().failure_rate(1.0).build().is_ok());
    }

    #[test]
    fn config_errors_read_as_sentences_without_a_period() {
        let err = builder().minimum_calls(0).build().err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("invalid circuit breaker setting minimum_calls: must be at least 1".to_owned())
        );
    }

    #[test]
    fn exponential_wait_grows_up_to_its_cap() {
        let wait = OpenWait::doubling(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<_> = (1..=5).map(|n| wait.wait(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(wait.wait(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn default_counted_classes() {
        let set = builder().counted;
        for class in ErrorClass::ALL {
            let expected = !matches!(
                class,
                ErrorClass::Client
                    | ErrorClass::ContextLength
                    | ErrorClass::ContentFilter
                    | ErrorClass::Rejected
                    | ErrorClass::Cancelled
                    | ErrorClass::RateLimited
            );
            assert_eq!(set.contains(class), expected, "{class}");
        }
    }
}
