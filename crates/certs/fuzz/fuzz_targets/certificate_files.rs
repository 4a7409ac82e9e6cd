//! Fuzzes what an operator's files may hold: the input, split at NUL bytes, is a CA
//! file, a certificate file and a key file, checked for both roles, and also a deny
//! list file. Any panic is a bug; files that pass must hold a certificate whose
//! fingerprint is its leaf's, and every fingerprint read from a deny list must read
//! back from its printed form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_certs::check::{check, FileRead, Files};
use longhaul_certs::fingerprint::{parse_deny_file, Fingerprint};
use longhaul_certs::{UnixTime, Usage};
use std::path::PathBuf;

fn file(name: &str, bytes: &[u8]) -> FileRead {
    FileRead {
        path: PathBuf::from(name),
        contents: Ok(bytes.to_vec()),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (ca, cert, key) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let files = Files {
        ca: (!ca.is_empty()).then(|| file("ca.pem", ca)),
        cert: Some(file("node.pem", cert)),
        key: Some(file("node.key", key)),
    };
    for usage in [Usage::Server, Usage::Client] {
        if let Ok(checked) = check(&files, usage, UnixTime::now()) {
            let identity = checked.identity.expect("a certificate and key were given");
            let leaf = identity.key.cert[0].as_ref();
            assert_eq!(identity.fingerprint, Fingerprint::of(leaf));
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(list) = parse_deny_file(&text) {
        for f in list {
            assert_eq!(Fingerprint::parse(&f.to_string()), Ok(f));
        }
    }
});
