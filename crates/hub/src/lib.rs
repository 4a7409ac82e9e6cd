//! longhaul-hub
