//! The store's errors.

use std::{error::Error, fmt, time::Duration};

/// A configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub(crate) &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for ConfigError {}

/// Opening or migrating the database failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The builder's configuration cannot work.
    Config(ConfigError),
    /// SQLite refused (the file cannot be opened, is not a database, …).
    Sqlite(rusqlite::Error),
    /// The file was written by a newer version with more migrations.
    SchemaTooNew {
        /// The file's schema version.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// The writer thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid store configuration: {e}"),
            Self::Sqlite(e) => write!(f, "sqlite: {e}"),
            Self::SchemaTooNew { found, known } => write!(
                f,
                "database schema version {found} is newer than this build knows ({known})"
            ),
            Self::Thread(e) => write!(f, "cannot start the store's writer thread: {e}"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Sqlite(e) => Some(e),
            Self::Thread(e) => Some(e),
            Self::SchemaTooNew { .. } => None,
        }
    }
}

impl From<ConfigError> for StoreError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// A query that cannot be answered as asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum QueryError {
    /// The time range is longer than [`MAX_RANGE`](crate::MAX_RANGE).
    RangeTooLong {
        /// The range asked for.
        requested: Duration,
        /// The longest range allowed.
        max: Duration,
    },
    /// The range ends before it starts.
    RangeInverted,
    /// A percentile outside 0–100, not a number, or too many of them.
    BadPercentile(String),
    /// A filter value that names nothing (an unknown outcome or category).
    BadFilter(String),
    /// SQLite failed while reading.
    Sqlite(rusqlite::Error),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RangeTooLong { requested, max } => write!(
                f,
                "time range of {:.1} days is longer than the {:.0} days allowed",
                requested.as_secs_f64() / 86_400.0,
                max.as_secs_f64() / 86_400.0
            ),
            Self::RangeInverted => f.write_str("time range ends before it starts"),
            Self::BadPercentile(why) => write!(f, "bad percentile: {why}"),
            Self::BadFilter(why) => write!(f, "bad filter: {why}"),
            Self::Sqlite(e) => write!(f, "sqlite: {e}"),
        }
    }
}

impl Error for QueryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Sqlite(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for QueryError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}
