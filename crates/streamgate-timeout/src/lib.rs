//! First-content, idle and total deadlines for streaming tower services, cancelling by drop.
