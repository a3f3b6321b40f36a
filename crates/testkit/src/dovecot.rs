//! A real IMAP server for tests: Debian's `dovecot-imapd`, configured in a temporary directory
//! on free high ports (`imaps` and `imap` with STARTTLS), with a self-signed certificate made
//! by `openssl`, users from a password file and Maildir mailboxes the test fills directly.
//!
//! Skipped (`None`) when dovecot is not installed, except in CI (`CI` set), where it fails.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const DOVECOT: &str = "/usr/sbin/dovecot";

/// A running dovecot; stopped when dropped.
pub struct Dovecot {
    dir: TempDir,
    child: Child,
    /// Port of `imaps://` (TLS from the start).
    pub imaps_port: u16,
    /// Port of `imap://` (STARTTLS).
    pub imap_port: u16,
    owner: Option<(u32, u32)>,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn id_of(flag: &str, user: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Dovecot {
    /// Starts dovecot with these `(user, password)` accounts; waits until both ports answer.
    pub fn start(users: &[(&str, &str)]) -> Option<Dovecot> {
        if !Path::new(DOVECOT).exists() {
            assert!(std::env::var("CI").is_err(), "dovecot is missing (scripts/test.sh installs dovecot-imapd)");
            eprintln!("skipped: dovecot is not installed (apt-get install dovecot-imapd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let d = dir.path();
        // As root, mail is accessed as the `dovecot` user (dovecot refuses UID 0), who must be
        // able to reach the mail directories.
        let root = is_root();
        let owner = if root {
            let uid = id_of("-u", "dovecot").expect("the dovecot user exists (dovecot-core creates it)");
            let gid = id_of("-g", "dovecot").expect("the dovecot group exists");
            Some((uid, gid))
        } else {
            None
        };
        set_mode(d, 0o755);
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        make_certificate(d);
        let passwd: String = users.iter().map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n")).collect();
        std::fs::write(d.join("passwd"), passwd).expect("password file");
        std::fs::create_dir_all(d.join("mail")).expect("mail directory");
        let (imaps_port, imap_port) = (free_port(), free_port());
        let (internal, login, mail_ids) = match owner {
            Some((uid, gid)) => ("dovecot".to_string(), "dovenull".to_string(), format!("uid={uid} gid={gid}")),
            None => {
                let me = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
                (me.clone(), me, String::new())
            }
        };
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = {mail_ids} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
"#,
            d = d.display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("dovecot.conf");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts");
        let dovecot = Dovecot { dir, child, imaps_port, imap_port, owner };
        for (u, _) in users {
            dovecot.folder_dir(u, "INBOX");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [imaps_port, imap_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "dovecot did not listen on {port}: {}", dovecot.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(dovecot)
    }

    /// The certificate of the test CA that signed the server's certificate (trust it).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// dovecot's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `imaps://user:password@127.0.0.1:PORT/folder`.
    pub fn imaps_url(&self, user: &str, password: &str, folder: &str) -> String {
        format!("imaps://{user}:{password}@127.0.0.1:{}/{folder}", self.imaps_port)
    }

    /// `imap://user:password@127.0.0.1:PORT/folder` (STARTTLS).
    pub fn imap_url(&self, user: &str, password: &str, folder: &str) -> String {
        format!("imap://{user}:{password}@127.0.0.1:{}/{folder}", self.imap_port)
    }

    /// The Maildir of a user's folder (created with its parts, owned by the mail user).
    fn folder_dir(&self, user: &str, folder: &str) -> PathBuf {
        let mut path = self.dir.path().join("mail").join(user);
        let home = path.clone();
        path.push("Maildir");
        if folder != "INBOX" {
            path.push(format!(".{folder}"));
        }
        for part in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(path.join(part)).expect("maildir");
        }
        if let Some((uid, gid)) = self.owner {
            chown_tree(&home, uid, gid);
        }
        path
    }

    /// Puts a mail into a user's folder, as a delivery agent would (written to `tmp`, then
    /// moved to `new`).
    pub fn deliver(&self, user: &str, folder: &str, name: &str, raw: &[u8]) {
        let dir = self.folder_dir(user, folder);
        let tmp = dir.join("tmp").join(name);
        std::fs::write(&tmp, raw).expect("mail file");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).expect("chown mail file");
        }
        std::fs::rename(&tmp, dir.join("new").join(name)).expect("mail into new/");
    }

    /// The mails in a user's folder, each with whether it is marked as seen.
    pub fn mails(&self, user: &str, folder: &str) -> Vec<(String, bool)> {
        let mut path = self.dir.path().join("mail").join(user).join("Maildir");
        if folder != "INBOX" {
            path.push(format!(".{folder}"));
        }
        let mut out = Vec::new();
        for part in ["new", "cur"] {
            for entry in std::fs::read_dir(path.join(part)).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let seen = name.rsplit_once(":2,").is_some_and(|(_, flags)| flags.contains('S'));
                out.push((name, seen));
            }
        }
        out.sort();
        out
    }
}

/// A test CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`cert.pem`, `key.pem`), made with `openssl` in `dir`. (A self-signed server certificate
/// would not do: it is a CA certificate, which TLS clients refuse as a server's.) Also for
/// other TLS servers of the tests (Kontor's SMTP listener with STARTTLS).
pub fn make_certificate(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "2", "-subj", "/CN=Kontor Test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "server.csr"]].concat());
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            chown_tree(&entry.path(), uid, gid);
        }
    }
}
