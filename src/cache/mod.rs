//! The content-addressed step cache, its index, import and export.
