//! When to look again at files that changed, sans IO: the change detector behind every
//! reload.
//!
//! The watcher polls: every second it reads the files (a few KB each) and hashes what it
//! read, errors included. Content, not mtime or inode, so an atomic rename, a Kubernetes
//! secret's `..data` symlink swap, `cp -p` (old mtime) and two writes in one second all
//! count as changes, and a `touch` does not. inotify (the `notify` crate) was the other
//! way; it watches inodes, so a rename or a symlink swap leaves it watching the old file
//! unless it watches directories and re-resolves links itself, which is this poll again
//! with more code.
//!
//! A change is acted on once the files read the same twice in a row (about a second
//! apart): a writer that puts the certificate and then the key in place, not atomically,
//! would otherwise be caught between the two and refused for a key that does not match.
//! A SIGHUP acts at once: the operator says the files are ready. Contents that were
//! refused are not checked again (nor logged again) until they change or a SIGHUP asks.

/// A hash of what a set of files read as (their bytes, or the error reading them).
pub type Digest = [u8; 32];

/// Hashes the results of reading files, in order.
pub fn digest<'a>(reads: impl IntoIterator<Item = &'a Result<Vec<u8>, String>>) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for read in reads {
        // Tag and length before each part: no two different sets hash alike by shifting
        // bytes from one file to the next.
        let (tag, bytes) = match read {
            Ok(bytes) => (0u8, bytes.as_slice()),
            Err(e) => (1u8, e.as_bytes()),
        };
        ctx.update(&[tag]);
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What to do with what the files read as now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// What is in use, or contents already refused: nothing to do.
    Unchanged,
    /// Different from the last look: wait for the next one.
    Settling,
    /// Check these contents; report back with [`Settle::accepted`] or [`Settle::refused`].
    Check,
}

/// The change detector of one set of files.
#[derive(Debug, Clone)]
pub struct Settle {
    /// What the files held when their contents were last taken into use.
    current: Digest,
    /// What they held at the last look, while it differs from `current`.
    seen: Option<Digest>,
    /// The last contents refused.
    refused: Option<Digest>,
}

impl Settle {
    /// Starts from the contents in use.
    pub fn new(current: Digest) -> Settle {
        Settle {
            current,
            seen: None,
            refused: None,
        }
    }

    /// Looks at what the files hold now; `forced` (a SIGHUP) skips the wait and retries
    /// refused contents.
    pub fn observe(&mut self, now: Digest, forced: bool) -> Step {
        if now == self.current {
            self.seen = None;
            return Step::Unchanged;
        }
        if forced {
            return Step::Check;
        }
        if self.refused == Some(now) {
            return Step::Unchanged;
        }
        if self.seen == Some(now) {
            return Step::Check;
        }
        self.seen = Some(now);
        Step::Settling
    }

    /// The contents `now` were taken into use.
    pub fn accepted(&mut self, now: Digest) {
        self.current = now;
        self.seen = None;
        self.refused = None;
    }

    /// The contents `now` were refused; the old ones stay in use.
    pub fn refused(&mut self, now: Digest) {
        self.refused = Some(now);
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(parts: &[&[u8]]) -> Digest {
        let reads: Vec<Result<Vec<u8>, String>> = parts.iter().map(|p| Ok(p.to_vec())).collect();
        digest(&reads)
    }

    #[test]
    fn digests_tell_file_boundaries_and_errors_apart() {
        assert_ne!(d(&[b"ab", b"c"]), d(&[b"a", b"bc"]));
        let missing: Vec<Result<Vec<u8>, String>> = vec![Err("no such file".into())];
        let literal: Vec<Result<Vec<u8>, String>> = vec![Ok(b"no such file".to_vec())];
        assert_ne!(digest(&missing), digest(&literal));
        assert_eq!(d(&[b"a"]), d(&[b"a"]));
    }

    #[test]
    fn a_change_is_checked_once_it_reads_the_same_twice() {
        let (old, half, new) = (d(&[b"old"]), d(&[b"half"]), d(&[b"new"]));
        let mut s = Settle::new(old);
        assert_eq!(s.observe(old, false), Step::Unchanged);
        assert_eq!(s.observe(half, false), Step::Settling);
        // Still being written: a different read restarts the wait.
        assert_eq!(s.observe(new, false), Step::Settling);
        assert_eq!(s.observe(new, false), Step::Check);
        s.accepted(new);
        assert_eq!(s.observe(new, false), Step::Unchanged);
    }

    #[test]
    fn refused_contents_wait_for_a_change_or_a_sighup() {
        let (old, bad, good) = (d(&[b"old"]), d(&[b"bad"]), d(&[b"good"]));
        let mut s = Settle::new(old);
        assert_eq!(s.observe(bad, false), Step::Settling);
        assert_eq!(s.observe(bad, false), Step::Check);
        s.refused(bad);
        for _ in 0..3 {
            assert_eq!(s.observe(bad, false), Step::Unchanged);
        }
        assert_eq!(s.observe(bad, true), Step::Check, "a SIGHUP retries");
        s.refused(bad);
        assert_eq!(s.observe(good, false), Step::Settling);
        assert_eq!(s.observe(good, false), Step::Check);
        s.accepted(good);
        // Going back to the old files is a change like any other.
        assert_eq!(s.observe(old, false), Step::Settling);
    }

    #[test]
    fn a_sighup_checks_at_once_but_not_what_is_in_use() {
        let (old, new) = (d(&[b"old"]), d(&[b"new"]));
        let mut s = Settle::new(old);
        assert_eq!(s.observe(old, true), Step::Unchanged);
        assert_eq!(s.observe(new, true), Step::Check);
    }

    #[test]
    fn files_put_back_before_they_settle_are_no_change() {
        let (old, new) = (d(&[b"old"]), d(&[b"new"]));
        let mut s = Settle::new(old);
        assert_eq!(s.observe(new, false), Step::Settling);
        assert_eq!(s.observe(old, false), Step::Unchanged);
        // The earlier sighting was forgotten: `new` waits again.
        assert_eq!(s.observe(new, false), Step::Settling);
    }
}
