//! Exact percentiles, as numpy computes them by default.

use crate::QueryError;

/// Percentiles one query may ask for at most: 32.
pub const MAX_PERCENTILES: usize = 32;

/// The `p`th percentile (0 to 100) of `sorted` (ascending, no NaN), by
/// linear interpolation between the closest ranks: the value at position
/// `(n − 1) · p / 100`, interpolated between its neighbours. This is
/// numpy's default (`method="linear"`) and R's type 7. `None` when empty.
///
/// ```
/// use streamgate_store::percentile;
///
/// let sorted = [10.0, 20.0, 30.0, 40.0];
/// assert_eq!(percentile(&sorted, 50.0), Some(25.0));
/// assert_eq!(percentile(&sorted, 0.0), Some(10.0));
/// assert_eq!(percentile(&sorted, 100.0), Some(40.0));
/// assert_eq!(percentile(&sorted, 10.0), Some(13.0));
/// ```
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = (last as f64) * (p.clamp(0.0, 100.0) / 100.0);
    let below = position.floor();
    let index = below as usize;
    let low = sorted[index.min(last)];
    let high = sorted[(index + 1).min(last)];
    Some(low + (position - below) * (high - low))
}

/// Checks a list of percentiles: 1 to [`MAX_PERCENTILES`] values, each a
/// number from 0 to 100.
pub(crate) fn validate(percentiles: &[f64]) -> Result<(), QueryError> {
    if percentiles.is_empty() {
        return Err(QueryError::BadPercentile("no percentiles asked for".into()));
    }
    if percentiles.len() > MAX_PERCENTILES {
        return Err(QueryError::BadPercentile(format!(
            "{} percentiles asked for, at most {MAX_PERCENTILES} allowed",
            percentiles.len()
        )));
    }
    if let Some(bad) = percentiles
        .iter()
        .find(|p| !p.is_finite() || !(0.0..=100.0).contains(*p))
    {
        return Err(QueryError::BadPercentile(format!(
            "{bad} is not between 0 and 100"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear_on_uneven_data() {
        // numpy.percentile([1, 2, 4, 8, 16], [0, 25, 50, 90, 99, 100])
        let sorted = [1.0, 2.0, 4.0, 8.0, 16.0];
        let expect = [
            (0.0, 1.0),
            (25.0, 2.0),
            (50.0, 4.0),
            (90.0, 12.8),
            (99.0, 15.68),
            (100.0, 16.0),
        ];
        for (p, want) in expect {
            let got = percentile(&sorted, p).unwrap();
            assert!((got - want).abs() < 1e-9, "p{p}: {got} != {want}");
        }
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_none() {
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[101.0]).is_err());
        assert!(validate(&[-0.5]).is_err());
        assert!(validate(&[f64::NAN]).is_err());
        assert!(validate(&[50.0; MAX_PERCENTILES + 1]).is_err());
        assert!(validate(&[0.0, 50.0, 100.0]).is_ok());
    }
}
