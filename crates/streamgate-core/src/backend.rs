//! Backend names.

use std::{fmt, sync::Arc};

use serde::{Serialize, Serializer};

/// The name of one backend (a provider account, region or deployment), given
/// once when its stack is built. Cheap to clone: an `Arc<str>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(Arc<str>);

impl BackendId {
    /// A backend called `name`.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's address, shared by every clone of this id.
    pub(crate) fn addr(&self) -> u64 {
        Arc::as_ptr(&self.0).cast::<u8>() as usize as u64
    }
}

impl Default for BackendId {
    /// The name `"default"`, for layers used without a backend name.
    fn default() -> Self {
        Self::new("default")
    }
}

impl fmt::Debug for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BackendId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for BackendId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for BackendId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<Arc<str>> for BackendId {
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl Serialize for BackendId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}
