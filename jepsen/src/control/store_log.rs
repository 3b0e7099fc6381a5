//! What reached the object store, from moto's request log: how many
//! objects were PUT (data objects and object-WAL segments apart), read and
//! deleted. Requests the fault proxy reset or black-holed never reach moto
//! and are not counted; a PUT counts when moto answered it with 2xx.
//!
//! moto logs one line per request in the werkzeug format:
//! `127.0.0.1 - - [22/Nov/2026 06:31:15] "PUT /jepsen/objects/b28a/0.sko HTTP/1.1" 200 -`

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Object-store request counts of one run (successful requests only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounts {
    /// PUTs of data objects (everything but bucket creation and the WAL).
    pub object_puts: u64,
    /// PUTs under `wal/` (the object WAL).
    pub wal_puts: u64,
    /// GETs and HEADs of objects.
    pub gets: u64,
    pub deletes: u64,
    /// LIST requests (GET of the bucket).
    pub lists: u64,
    /// Requests moto answered with an error status.
    pub errors: u64,
}

impl StoreCounts {
    /// Counts the requests in a moto log for `bucket`; an unreadable log
    /// gives zeros.
    pub fn from_log(path: &Path, bucket: &str) -> Self {
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text, bucket))
            .unwrap_or_default()
    }

    /// Counts the request lines in `text`.
    pub fn parse(text: &str, bucket: &str) -> Self {
        let mut c = StoreCounts::default();
        for line in text.lines() {
            let Some((method, path, status)) = request(line) else {
                continue;
            };
            if !(200..300).contains(&status) {
                c.errors += 1;
                continue;
            }
            let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(bucket)) else {
                continue;
            };
            let key = rest.trim_start_matches('/');
            let key = key.split('?').next().unwrap_or(key);
            match method {
                "PUT" if key.is_empty() => {} // bucket creation
                "PUT" if key.starts_with("wal/") => c.wal_puts += 1,
                "PUT" => c.object_puts += 1,
                "GET" if key.is_empty() => c.lists += 1,
                "GET" | "HEAD" => c.gets += 1,
                "DELETE" => c.deletes += 1,
                "POST" if rest.contains("?delete") => c.deletes += 1,
                _ => {}
            }
        }
        c
    }

    /// One summary line.
    pub fn render(&self) -> String {
        format!(
            "object store (moto): {} object PUTs, {} WAL PUTs, {} GETs, {} LISTs, {} DELETEs, {} error answers",
            self.object_puts, self.wal_puts, self.gets, self.lists, self.deletes, self.errors
        )
    }
}

/// `(method, path, status)` of a werkzeug request line.
fn request(line: &str) -> Option<(&str, &str, u16)> {
    let (_, rest) = line.split_once('"')?;
    let (req, rest) = rest.split_once('"')?;
    let mut parts = req.split(' ');
    let method = parts.next()?;
    let path = parts.next()?;
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some((method, path, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_puts_gets_and_errors_per_kind() {
        let log = r#" * Running on http://127.0.0.1:41359
127.0.0.1 - - [22/Nov/2026 06:31:14] "PUT /jepsen HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:15] "PUT /jepsen/objects/b28a/00000000000000000000.sko HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:15] "PUT /jepsen/objects/cfad/00000000000000000001.sko HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:15] "PUT /jepsen/wal/1/00000000000000000007 HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:16] "PUT /jepsen/objects/aaaa/2.sko HTTP/1.1" 500 -
127.0.0.1 - - [22/Nov/2026 06:31:16] "GET /jepsen/objects/b28a/00000000000000000000.sko HTTP/1.1" 206 -
127.0.0.1 - - [22/Nov/2026 06:31:16] "HEAD /jepsen/objects/b28a/00000000000000000000.sko HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:17] "GET /jepsen?list-type=2&prefix=wal%2F1%2F HTTP/1.1" 200 -
127.0.0.1 - - [22/Nov/2026 06:31:17] "DELETE /jepsen/wal/1/00000000000000000007 HTTP/1.1" 204 -
127.0.0.1 - - [22/Nov/2026 06:31:17] "PUT /other/objects/x HTTP/1.1" 200 -
"#;
        let c = StoreCounts::parse(log, "jepsen");
        assert_eq!(
            c,
            StoreCounts {
                object_puts: 2,
                wal_puts: 1,
                gets: 2,
                deletes: 1,
                lists: 1,
                errors: 1,
            }
        );
        assert!(c.render().contains("2 object PUTs, 1 WAL PUTs"));
    }
}
