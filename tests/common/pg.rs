//! A throwaway PostgreSQL cluster for tests: initdb in a temp directory,
//! its own port and socket directory, no TCP listener at all, stopped on
//! drop. As root (CI), it runs as the `postgres` user, because initdb
//! refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use super::{free_port, in_ci, is_root};

pub struct Postgres {
    dir: TempDir,
    pub port: u16,
    pub bindir: PathBuf,
    as_postgres: bool,
}

/// Finds the directory of initdb/pg_ctl: Debian keeps them off PATH under
/// /usr/lib/postgresql/<version>/bin.
fn find_bindir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.reverse();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn postgres_uid_gid() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// Starts a cluster. Without PostgreSQL installed: `None` and a
    /// message, except when CI=true, where it panics (a missing service
    /// fails the run, it never skips).
    pub fn start() -> Option<Postgres> {
        Self::start_with(&[])
    }

    /// Starts a cluster with extra server settings (`-c name=value`);
    /// `{dir}` in a value is replaced by the cluster's own directory,
    /// which the server's user can write.
    pub fn start_with(settings: &[(&str, &str)]) -> Option<Postgres> {
        let Some(bindir) = find_bindir() else {
            assert!(
                !in_ci(),
                "CI=true but PostgreSQL (initdb) is not installed: .ci/run must install it"
            );
            eprintln!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let (dir, as_postgres) = Self::scratch_dir();
        let port = free_port();
        let pg = Postgres {
            dir,
            port,
            bindir,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        check(
            pg.server_cmd("initdb")
                .args(["-D"])
                .arg(&data)
                .args([
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .output()
                .unwrap(),
            "initdb",
        );
        if !settings.is_empty() {
            let dir = pg.dir.path().display().to_string();
            let mut conf = String::new();
            for (k, v) in settings {
                let v = v.replace("{dir}", &dir).replace('\'', "''");
                conf.push_str(&format!("{k} = '{v}'\n"));
            }
            let path = data.join("postgresql.auto.conf");
            let mut old = std::fs::read_to_string(&path).unwrap_or_default();
            old.push_str(&conf);
            std::fs::write(&path, old).unwrap();
        }
        pg.launch();
        Some(pg)
    }

    /// A scratch directory the server's user owns, and whether the
    /// server runs as `postgres` (we are root).
    pub fn scratch_dir() -> (TempDir, bool) {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let (uid, gid) =
                postgres_uid_gid().expect("running as root, but there is no postgres user");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        (dir, as_postgres)
    }

    /// Starts a server on the data directory `dir/data` made by someone
    /// else (a restore), on a port of its own.
    pub fn adopt(dir: TempDir) -> Postgres {
        let pg = Postgres {
            dir,
            port: free_port(),
            bindir: find_bindir().expect("PostgreSQL is not installed"),
            as_postgres: is_root(),
        };
        pg.launch();
        pg
    }

    fn launch(&self) {
        let pg = self;
        let data = pg.dir.path().join("data");
        // Fast and unsafe unless the cluster's settings say otherwise (a
        // standby's base backup needs full_page_writes on the primary).
        let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
        let fpw = if auto.contains("full_page_writes") {
            ""
        } else {
            " -c full_page_writes=off"
        };
        let opts = format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=off{fpw}",
            pg.port,
            pg.dir.path().display()
        );
        let out = pg
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("log"))
            .args(["-w", "-t", "120", "-o", &opts, "start"])
            .output()
            .unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("pg_ctl start failed; server log:\n{}", tail.join("\n"));
        }
    }

    fn server_cmd(&self, tool: &str) -> Command {
        let exe = self.bindir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Gives the server's user (postgres, when we are root) ownership of
    /// `path` and everything under it.
    pub fn give(&self, path: &Path) {
        if self.as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .output()
                .unwrap();
            check(out, "chown");
        }
    }

    /// A client tool (psql, pg_dump) connected to this cluster.
    pub fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bindir.join(tool));
        c.arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
        c
    }

    /// Runs SQL in `db`, stopping at the first error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = check(
            self.client("psql")
                .args([
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    db,
                    "-c",
                    sql,
                ])
                .output()
                .unwrap(),
            "psql",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Loads a plain SQL dump into `db`.
    pub fn load(&self, db: &str, file: &Path) {
        check(
            self.client("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"])
                .arg(file)
                .output()
                .unwrap(),
            "psql -f",
        );
    }

    pub fn createdb(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// A shell command line running pg_dump of `db` (for --command).
    pub fn pg_dump_command(&self, db: &str) -> String {
        format!(
            "{} -h {} -p {} -U postgres -d {db}",
            self.bindir.join("pg_dump").display(),
            self.dir.path().display(),
            self.port
        )
    }

    /// pg_dump of `db` into memory.
    pub fn pg_dump(&self, db: &str) -> Vec<u8> {
        check(
            self.client("pg_dump").args(["-d", db]).output().unwrap(),
            "pg_dump",
        )
        .stdout
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
