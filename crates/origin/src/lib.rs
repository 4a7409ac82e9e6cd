//! longhaul-origin
