//! Database URLs taken apart and put together again: `scheme://user@host:port/path?query`.
//! Plain string work (no parsing library), enough for the URLs the tests use.

/// The parts of a URL `scheme://user@host:port/path?query`; each part keeps its punctuation,
/// so the parts joined give the URL again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `scheme://` (empty if the URL has none).
    pub scheme: &'a str,
    /// `user:password@` (empty if the URL has none).
    pub user: &'a str,
    /// `host:port`.
    pub host: &'a str,
    /// `/path` (empty if the URL has none).
    pub path: &'a str,
    /// What follows `?`.
    pub query: Option<&'a str>,
}

/// Splits `scheme://user@host:port/path?query` into its parts.
pub fn split_url(url: &str) -> UrlParts<'_> {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = main[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(main.len());
    let authority = &main[scheme_end..authority_end];
    let user_end = authority.rfind('@').map(|i| i + 1).unwrap_or(0);
    UrlParts {
        scheme: &main[..scheme_end],
        user: &authority[..user_end],
        host: &authority[user_end..],
        path: &main[authority_end..],
        query,
    }
}

fn join(scheme: &str, user: &str, host: &str, path: &str, query: Option<&str>) -> String {
    let mut out = format!("{scheme}{user}{host}{path}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `base` with its database name replaced by `name` (user, host and query kept).
pub fn with_database(base: &str, name: &str) -> String {
    let p = split_url(base);
    join(p.scheme, p.user, p.host, &format!("/{name}"), p.query)
}

/// `url` with its server address replaced by `host_port` (for going through a proxy).
pub fn with_host(url: &str, host_port: &str) -> String {
    let p = split_url(url);
    join(p.scheme, p.user, host_port, p.path, p.query)
}

/// `host:port` of the server in `url`, with `default_port` if the URL names none.
pub fn host_port(url: &str, default_port: u16) -> String {
    let host = split_url(url).host;
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    }
}

/// The URL for messages: the password replaced by `***`, the query (which may hold one too)
/// left out.
pub fn redact(url: &str) -> String {
    let p = split_url(url);
    match p.user.trim_end_matches('@').split_once(':') {
        Some((u, _)) => format!("{}{u}:***@{}{}", p.scheme, p.host, p.path),
        None => join(p.scheme, p.user, p.host, p.path, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_parts_that_join_to_the_url_again() {
        for (url, scheme, user, host, path, query) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://",
                "postgres@",
                "127.0.0.1:5432",
                "/postgres",
                None,
            ),
            (
                "postgres://u:p@w@db/kontor?sslmode=disable",
                "postgres://",
                "u:p@w@",
                "db",
                "/kontor",
                Some("sslmode=disable"),
            ),
            ("postgres://localhost", "postgres://", "", "localhost", "", None),
            ("db.example:6432/x", "", "", "db.example:6432", "/x", None),
        ] {
            let p = split_url(url);
            assert_eq!(p, UrlParts { scheme, user, host, path, query }, "{url}");
            assert_eq!(join(p.scheme, p.user, p.host, p.path, p.query), url);
        }
    }

    #[test]
    fn with_database_replaces_only_the_database_name() {
        for (base, want) in [
            ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/kontor_t_1"),
            ("postgres://u:pw@db:5432/postgres?sslmode=disable", "postgres://u:pw@db:5432/kontor_t_1?sslmode=disable"),
            ("postgres://db", "postgres://db/kontor_t_1"),
        ] {
            assert_eq!(with_database(base, "kontor_t_1"), want, "{base}");
        }
    }

    #[test]
    fn with_host_and_host_port_swap_and_read_the_server_address() {
        let url = "postgres://u:pw@db.internal/kontor?application_name=t";
        assert_eq!(with_host(url, "127.0.0.1:40001"), "postgres://u:pw@127.0.0.1:40001/kontor?application_name=t");
        assert_eq!(host_port(url, 5432), "db.internal:5432");
        assert_eq!(host_port("postgres://u@127.0.0.1:6543/k", 5432), "127.0.0.1:6543");
    }

    #[test]
    fn redact_hides_the_password_and_the_query() {
        for (url, want) in [
            ("postgres://kontor:s3cret@db:5432/kontor", "postgres://kontor:***@db:5432/kontor"),
            ("postgres://kontor:s3cret@db/k?password=other", "postgres://kontor:***@db/k"),
            ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/postgres"),
            ("postgres://db/k?sslmode=require", "postgres://db/k"),
        ] {
            assert_eq!(redact(url), want, "{url}");
            assert!(!redact(url).contains("s3cret") && !redact(url).contains("other"));
        }
    }
}
