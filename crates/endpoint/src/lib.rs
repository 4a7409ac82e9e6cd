//! longhaul-endpoint
