//! streamgate
