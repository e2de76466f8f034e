//! A throwaway Postgres cluster started from the machine's `initdb` and `pg_ctl`, for
//! `bridge serve` without `DATABASE_URL` and for tests on a machine with no server running.
//!
//! The cluster lives in `<root>/data`, listens on 127.0.0.1 at a free port, trusts local
//! connections, and trades durability for speed (`fsync=off`): it is for development only.
//! When this process runs as root (initdb refuses root), the cluster runs as the `postgres`
//! system user, or `nobody`.

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// How to install the server binaries, shown when they are missing.
pub const INSTALL_HINT: &str = "Postgres server binaries (initdb, pg_ctl) were not found on PATH \
or under /usr/lib/postgresql/*/bin (or in BRIDGE_PG_BIN_DIR). Install them (Debian/Ubuntu: `sudo apt-get install postgresql`; \
macOS: `brew install postgresql@16`), or set DATABASE_URL to a running server.";

#[derive(Debug)]
pub struct LocalPostgres {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    /// Whether this process started the server (and so should stop it).
    pub started_here: bool,
}

impl LocalPostgres {
    /// Starts (or reuses, if already running) the cluster under `root`, creating it on
    /// first use. Blocking: call from `spawn_blocking` inside async code.
    pub fn start(root: &Path) -> anyhow::Result<Self> {
        Self::start_with(root, "")
    }

    /// Like [`start`](Self::start), with more server options (`-c name=value …`), e.g. TLS.
    /// Files the server reads must belong to its user: see [`hand_over`](Self::hand_over).
    /// (Options apply when this call starts the server, not to one already running.)
    pub fn start_with(root: &Path, extra_options: &str) -> anyhow::Result<Self> {
        let bin = find_bin_dir().context(INSTALL_HINT)?;
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root
            .canonicalize()
            .context("resolving the Postgres directory")?;
        // One starter at a time (parallel test processes share one cluster).
        let lock = fs::File::create(root.join("start.lock")).context("creating start.lock")?;
        lock.lock().context("locking start.lock")?;

        let run_as = if current_uid()? == 0 {
            Some(unprivileged_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .context("handing the Postgres directory to its user")?;
        }
        let mut pg = Self {
            root,
            bin,
            port: 0,
            run_as,
            started_here: false,
        };
        let data = pg.data_dir();
        if !data.join("PG_VERSION").exists() {
            pg.run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "-A".as_ref(),
                    "trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--locale=C".as_ref(),
                    "--no-sync".as_ref(),
                ],
            )?;
        }
        if let Some(port) = pg.running_port() {
            pg.port = port;
            return Ok(pg);
        }
        // Keep the port across starts when it is still free, so URLs handed out stay valid.
        let port_file = pg.root.join("port");
        let remembered = fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok());
        pg.port = match remembered {
            Some(p) if TcpListener::bind(("127.0.0.1", p)).is_ok() => p,
            _ => free_port()?,
        };
        let _ = fs::write(&port_file, pg.port.to_string());
        let socket_dir = if pg.root.as_os_str().len() < 80 {
            pg.root.clone()
        } else {
            std::env::temp_dir()
        };
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200 {extra_options}",
            pg.port,
            socket_dir.display()
        );
        let log = pg.root.join("postgres.log");
        pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )
        .with_context(|| format!("starting Postgres; its log is {}", log.display()))?;
        pg.started_here = true;
        Ok(pg)
    }

    /// Makes `path` the server's user's (as [`start`](Self::start) will run it), readable by
    /// it alone: a key file the server is to read, say.
    pub fn hand_over(path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let run_as = if current_uid()? == 0 {
            Some(unprivileged_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the server's user", path.display()))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))
    }

    /// The directory this cluster lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of a server already running on this data directory, if any.
    fn running_port(&self) -> Option<u16> {
        let data = self.data_dir();
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("status")
            .output()
            .ok()?;
        if !status.status.success() {
            return None;
        }
        let pid = fs::read_to_string(data.join("postmaster.pid")).ok()?;
        pid.lines().nth(3)?.trim().parse().ok()
    }

    /// Stops the server (fast shutdown: open sessions are ended).
    pub fn stop(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.root);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The directory holding `initdb` and `pg_ctl`: `BRIDGE_PG_BIN_DIR` if set, else on PATH,
/// else Debian's versioned directories.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("BRIDGE_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn id(args: &[&str]) -> anyhow::Result<u32> {
    let out = Command::new("id")
        .args(args)
        .output()
        .context("running id")?;
    if !out.status.success() {
        bail!(
            "id {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("reading id's output")
}

fn current_uid() -> anyhow::Result<u32> {
    id(&["-u"])
}

fn unprivileged_user() -> anyhow::Result<(u32, u32)> {
    for user in ["postgres", "nobody"] {
        if let (Ok(uid), Ok(gid)) = (id(&["-u", user]), id(&["-g", user])) {
            return Ok((uid, gid));
        }
    }
    bail!("running as root, and neither a `postgres` nor a `nobody` user exists to run Postgres as")
}
