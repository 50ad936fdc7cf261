//! Paired comparisons: two services measured in alternation, one pair at a
//! time, so that a machine whose speed drifts during the run (other work,
//! frequency changes) slows both members of a pair alike and the ratio
//! within each pair keeps what the service adds.
//!
//! The summary is the median of the pairs' ratios with a distribution-free
//! 95 % confidence interval: the order statistics at ranks
//! `n/2 ∓ 0.98·√n` (the normal approximation to the binomial count of
//! ratios below the true median), which assumes nothing about how the
//! ratios are spread.

/// The environment variable naming a file that the end-to-end benchmark
/// also writes its [`PairedOverhead::line`]s to; `bench-report` sets it and
/// reads the file back.
pub const OUT_VAR: &str = "STREAMGATE_PAIRED_OUT";

/// Fewest pairs a summary is given for: below this the interval is too wide
/// to say anything.
pub const MIN_PAIRS: usize = 10;

/// A median and the 95 % confidence interval around it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MedianInterval {
    /// The median.
    pub median: f64,
    /// The interval's lower end.
    pub low: f64,
    /// The interval's upper end.
    pub high: f64,
}

/// The median of `values` with its 95 % confidence interval (see the
/// [module docs](self)); sorts `values`. `None` for fewer than
/// [`MIN_PAIRS`] values or a value that is not finite.
pub fn median_interval(values: &mut [f64]) -> Option<MedianInterval> {
    let n = values.len();
    if n < MIN_PAIRS || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    let half = n as f64 / 2.0;
    let spread = 0.98 * (n as f64).sqrt();
    // 1-based ranks, clamped to the sample.
    let low_rank = ((half - spread).floor() as usize).clamp(1, n);
    let high_rank = ((half + spread).ceil() as usize).clamp(1, n);
    Some(MedianInterval {
        median,
        low: values[low_rank - 1],
        high: values[high_rank - 1],
    })
}

/// What a paired run found: how many pairs, and the second service's cost
/// over the first's as a percentage (median and interval of the pairs'
/// ratios, minus one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedOverhead {
    /// Pairs measured.
    pub pairs: usize,
    /// The overhead in percent: median and 95 % interval.
    pub percent: MedianInterval,
}

impl PairedOverhead {
    /// The overhead of `(first, second)` pairs of costs (the same unit for
    /// both); pairs whose first cost is zero (a reading below the clock's
    /// resolution) are left out. `None` if fewer than [`MIN_PAIRS`] remain.
    pub fn from_pairs(pairs: &[(f64, f64)]) -> Option<Self> {
        let mut percents: Vec<f64> = pairs
            .iter()
            .filter(|(first, _)| *first > 0.0)
            .map(|(first, second)| 100.0 * (second / first - 1.0))
            .collect();
        let percent = median_interval(&mut percents)?;
        Some(Self {
            pairs: percents.len(),
            percent,
        })
    }

    /// One tab-separated line naming what was compared: `paired`, `name`,
    /// the pairs, then the median, low and high overhead in percent.
    pub fn line(&self, name: &str) -> String {
        let p = &self.percent;
        format!(
            "paired\t{name}\t{}\t{:.3}\t{:.3}\t{:.3}",
            self.pairs, p.median, p.low, p.high
        )
    }

    /// Reads a [`line`](Self::line): the name and the overhead.
    pub fn parse(line: &str) -> Option<(String, Self)> {
        let fields: Vec<&str> = line.trim().split('\t').collect();
        let ["paired", name, pairs, median, low, high] = fields[..] else {
            return None;
        };
        let overhead = Self {
            pairs: pairs.parse().ok()?,
            percent: MedianInterval {
                median: median.parse().ok()?,
                low: low.parse().ok()?,
                high: high.parse().ok()?,
            },
        };
        Some((name.to_string(), overhead))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_interval_of_a_hundred_ranks_spans_the_fortieth_to_the_sixtieth() {
        // Shuffled, so the sort is exercised.
        let mut values: Vec<f64> = (1..=100).map(|i| f64::from((i * 37) % 100 + 1)).collect();
        let m = median_interval(&mut values).unwrap();
        assert_eq!(m.median, 50.5);
        // n/2 ∓ 0.98·√100 = 50 ∓ 9.8: ranks 40 and 60.
        assert_eq!((m.low, m.high), (40.0, 60.0));
    }

    #[test]
    fn an_odd_count_takes_the_middle_value_and_the_interval_holds_it() {
        let mut values = vec![5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 6.0, 8.0, 10.0, 11.0];
        let m = median_interval(&mut values).unwrap();
        assert_eq!(m.median, 6.0);
        assert!(m.low <= m.median && m.median <= m.high);
        // 5.5 ∓ 0.98·√11 = 5.5 ∓ 3.25: ranks 2 and 9.
        assert_eq!((m.low, m.high), (2.0, 9.0));
    }

    #[test]
    fn too_few_values_or_one_not_finite_give_no_summary() {
        assert_eq!(median_interval(&mut [1.0; MIN_PAIRS - 1]), None);
        let mut values = vec![1.0; MIN_PAIRS];
        values[3] = f64::NAN;
        assert_eq!(median_interval(&mut values), None);
        values[3] = f64::INFINITY;
        assert_eq!(median_interval(&mut values), None);
    }

    #[test]
    fn overhead_is_the_median_ratio_less_one_and_skips_unreadable_pairs() {
        // Ten pairs where the second costs 2 % more, one 10 % more, and one
        // whose first reading is zero.
        let mut pairs: Vec<(f64, f64)> = (0..10).map(|i| (100.0 + f64::from(i), 0.0)).collect();
        for pair in &mut pairs {
            pair.1 = pair.0 * 1.02;
        }
        pairs.push((50.0, 55.0));
        pairs.push((0.0, 3.0));
        let o = PairedOverhead::from_pairs(&pairs).unwrap();
        assert_eq!(o.pairs, 11);
        assert!((o.percent.median - 2.0).abs() < 1e-9, "{o:?}");
        assert!((o.percent.high - 2.0).abs() < 1e-9, "{o:?}");
    }

    #[test]
    fn the_line_reads_back() {
        let o = PairedOverhead {
            pairs: 412,
            percent: MedianInterval {
                median: 1.25,
                low: -0.5,
                high: 2.875,
            },
        };
        let line = o.line("full_stack");
        assert_eq!(line, "paired\tfull_stack\t412\t1.250\t-0.500\t2.875");
        assert_eq!(PairedOverhead::parse(&line), Some(("full_stack".into(), o)));
        assert_eq!(PairedOverhead::parse("paired\tx\t1\t2"), None);
        assert_eq!(PairedOverhead::parse("allocations\tx\t1\t2\t3\t4"), None);
        assert_eq!(PairedOverhead::parse("paired\tx\tmany\t1\t2\t3"), None);
    }
}
