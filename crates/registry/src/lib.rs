//! longhaul-registry
