//! `mobiflux bench csv`: the load path measured against `psql \copy`, side by side in
//! one run. Generates an IRVE-shaped CSV (the 40 columns of the published static schema,
//! realistic values, one row in a thousand breaking the schema), then:
//! 1. the reference: `psql \copy` of the file into an untyped (all `text`) staging table;
//! 2. mobiflux: `mobiflux run` of an `irve` pipeline on that file (land in the raw zone,
//!    validate against the Table Schema, normalize, load `charge_points`), as a child
//!    process whose peak RSS is read from the kernel (`wait4`).
//!
//! Prints rows/s for each, the ratio and mobiflux's peak RSS.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Deterministic pseudo-random numbers (xorshift), so two runs generate the same data.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Log-normal: median `median`, spread `sigma`.
    pub(crate) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * z).exp()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const HEADER: &str = "nom_amenageur,siren_amenageur,contact_amenageur,nom_operateur,contact_operateur,telephone_operateur,nom_enseigne,id_station_itinerance,id_station_local,nom_station,implantation_station,adresse_station,code_insee_commune,coordonneesXY,nbre_pdc,id_pdc_itinerance,id_pdc_local,puissance_nominale,prise_type_ef,prise_type_2,prise_type_combo_ccs,prise_type_chademo,prise_type_autre,gratuit,paiement_acte,paiement_cb,paiement_autre,tarification,condition_acces,reservation,horaires,accessibilite_pmr,restriction_gabarit,station_deux_roues,raccordement,num_pdl,date_mise_en_service,observations,date_maj,cable_t2_attache";

/// Writes `rows` IRVE static rows; returns the file size.
pub fn generate_irve(path: &Path, rows: u64) -> Result<u64> {
    let f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "{HEADER}")?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let owners = [
        "Société X",
        "Izivia",
        "Freshmile",
        "Électra",
        "Ionity",
        "TotalEnergies Marketing France",
        "Syndicat Départemental d'Énergie",
    ];
    let networks = [
        "Réseau de recharge ABC",
        "Mobive",
        "e-Born",
        "Alizé",
        "Révéo",
        "Freshmile",
    ];
    let places = [
        "Voirie",
        "Parking public",
        "Parking privé à usage public",
        "Parking privé réservé à la clientèle",
        "Station dédiée à la recharge rapide",
    ];
    let streets = [
        "avenue de la République",
        "rue Victor Hugo",
        "place de la Mairie",
        "boulevard Gambetta",
        "chemin des Écoliers",
    ];
    let hours = [
        "24/7",
        "Mo-Fr 08:00-19:00",
        "Mo-Su 06:00-22:00",
        "Mo-Fr 08:00-12:00,Mo-Fr 14:00-18:00",
    ];
    let pmr = [
        "Réservé PMR",
        "Accessible mais non réservé PMR",
        "Non accessible",
        "Accessibilité inconnue",
    ];
    let powers = ["3.7", "7.4", "11", "22", "50", "150", "350"];
    for i in 0..rows {
        let station = i / 4;
        let insee = if rng.below(1000) == 0 {
            "9A001".to_string() // breaks the code_insee_commune pattern
        } else {
            format!("{:05}", 1001 + rng.below(95000))
        };
        let lon = -4.5 + rng.below(12_000_000) as f64 / 1_000_000.0;
        let lat = 42.5 + rng.below(8_500_000) as f64 / 1_000_000.0;
        let b = |r: &mut Rng| if r.below(2) == 0 { "true" } else { "false" };
        writeln!(
            w,
            "{},{:09},contact@amenageur{}.fr,{},support@operateur{}.fr,0{:09},{},FRA{:02}P{:08},,Station {station},{},\"{} {} 750{:02} Ville\",{insee},\"[{lon:.6},{lat:.6}]\",4,FRA{:02}E{:09},,{},{},{},{},{},false,{},true,{},false,{},Accès libre,{},\"{}\",{},Hauteur maximale 2m,false,Direct,{:014},2020-{:02}-{:02},,2024-{:02}-{:02},{}",
            rng.pick(&owners),
            100_000_000 + rng.below(899_999_999),
            rng.below(50),
            rng.pick(&owners),
            rng.below(50),
            rng.below(1_000_000_000),
            rng.pick(&networks),
            rng.below(100),
            station,
            rng.pick(&places),
            1 + rng.below(200),
            rng.pick(&streets),
            rng.below(20),
            rng.below(100),
            i,
            rng.pick(&powers),
            b(&mut rng),
            b(&mut rng),
            b(&mut rng),
            b(&mut rng),
            b(&mut rng),
            b(&mut rng),
            if rng.below(3) == 0 {
                "\"0,35 €/kWh\""
            } else {
                ""
            },
            b(&mut rng),
            rng.pick(&hours),
            rng.pick(&pmr),
            rng.below(100_000_000_000_000),
            1 + rng.below(12),
            1 + rng.below(28),
            1 + rng.below(12),
            1 + rng.below(28),
            b(&mut rng),
        )?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The unit of the CPU times in /proc (`USER_HZ`).
pub(crate) fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU seconds used so far by every PostgreSQL process of this machine, including the
/// backends that already exited (their time is in the postmaster's `cutime`/`cstime`):
/// the difference across a phase is the server's share of its work. Zero when the server
/// runs elsewhere.
pub(crate) fn postgres_cpu_secs() -> f64 {
    let ticks = clock_ticks_per_second();
    let mut total = 0u64;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for p in procs.flatten() {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17)
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f
            .get(11..15)
            .map(|t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
    }
    total as f64 / ticks
}

/// [`postgres_cpu_secs`] once the backend of a finished client has been reaped (its time
/// reaches the postmaster's `cutime` only then): read until two readings 100 ms apart agree.
fn settled_postgres_cpu_secs() -> f64 {
    let mut last = postgres_cpu_secs();
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = postgres_cpu_secs();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// What a measured child used.
struct Measured {
    secs: f64,
    /// Peak RSS in KiB.
    rss_kib: u64,
    /// User + system CPU seconds of the child.
    cpu: f64,
    /// CPU seconds PostgreSQL spent meanwhile.
    pg_cpu: f64,
    status: std::process::ExitStatus,
}

/// Runs a command as a child; returns its time, peak RSS and CPU from `wait4`.
fn run_measured(cmd: &mut Command) -> Result<Measured> {
    let pg_before = postgres_cpu_secs();
    let started = Instant::now();
    let child = cmd.spawn().context("starting the child")?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let secs = started.elapsed().as_secs_f64();
    std::mem::forget(child); // already reaped
    use std::os::unix::process::ExitStatusExt;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        secs,
        rss_kib: usage.ru_maxrss as u64,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        pg_cpu: settled_postgres_cpu_secs() - pg_before,
        status: std::process::ExitStatus::from_raw(status),
    })
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql (is the postgresql-client package installed?)")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A Python virtual environment in the tools folder (`MOBIFLUX_TOOLS`, by default
/// `~/.cache/mobiflux-tools`, outside any clone) with `packages` installed from PyPI on
/// first use; its interpreter. Ready when `import {imports}` works and every package
/// pinned as `name==version` (extras such as `[binary]` aside) is installed at that
/// version; otherwise (re)installed, so a pin changed in the source takes effect.
pub fn python_venv(name: &str, imports: &str, packages: &[&str]) -> Result<PathBuf> {
    let tools = std::env::var("MOBIFLUX_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mobiflux-tools")
        });
    let dir = tools.join(name);
    let python = dir.join("bin/python");
    let pins: Vec<String> = packages
        .iter()
        .filter_map(|p| p.split_once("=="))
        .map(|(dist, version)| {
            let dist = dist.split('[').next().unwrap_or(dist);
            format!("({dist:?}, {version:?})")
        })
        .collect();
    let check = format!(
        "import {imports}\nimport importlib.metadata as m, sys\nsys.exit(any(m.version(d) != v for d, v in [{}]))",
        pins.join(", ")
    );
    let ready = Command::new(&python)
        .args(["-c", &check])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        println!("installing {} into {}", packages.join(", "), dir.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()?
            .success()
            && Command::new(dir.join("bin/pip"))
                .args(["install", "-q"])
                .args(packages)
                .status()?
                .success();
        if !ok {
            bail!(
                "could not install {} from PyPI into {}",
                packages.join(", "),
                dir.display()
            );
        }
    }
    Ok(python)
}

/// The value at quantile `p` of sorted measurements (nearest rank); `None` when empty.
pub(crate) fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let i = (last as f64 * p).round() as usize;
    Some(sorted[i.min(last)])
}

/// A database made for one benchmark run and dropped after it, so no earlier run's bloat
/// or rows weigh on the figures.
pub(crate) struct FreshDb {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl FreshDb {
    fn create(admin: &str) -> Result<Self> {
        Self::named(admin, "bench")
    }

    /// `mobiflux_{tag}_{pid}` on the server of `admin`.
    pub(crate) fn named(admin: &str, tag: &str) -> Result<Self> {
        let name = format!("mobiflux_{tag}_{}", std::process::id());
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        psql(admin, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(FreshDb {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {}", self.name),
        );
    }
}

/// The measured loads of one round: the reference, mobiflux as the issue defines the path
/// (raw zone, Table Schema, `charge_points`), and mobiflux with its curated Parquet zone on
/// (the product's default, shown beside it: the reference writes no Parquet).
struct Round {
    reference: Measured,
    mobiflux: Measured,
    curated: Measured,
}

/// One round on the same file, each load in a fresh database.
fn one_round(admin: &str, file: &Path, dir: &Path) -> Result<Round> {
    let db = FreshDb::create(admin)?;
    let warehouse = db.url.as_str();
    // 1. Reference: psql \copy into an untyped staging table.
    let cols: Vec<String> = HEADER.split(',').map(|c| format!("\"{c}\" text")).collect();
    psql(
        warehouse,
        &format!("CREATE TABLE bench_irve_raw ({})", cols.join(", ")),
    )?;
    let copy = format!(
        "\\copy bench_irve_raw FROM '{}' WITH (FORMAT csv, HEADER true)",
        file.display()
    );
    let reference = run_measured(Command::new("psql").args([
        warehouse,
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-c",
        &copy,
    ]))?;
    if !reference.status.success() {
        bail!("psql \\copy failed");
    }
    drop(db);
    let mobiflux = mobiflux_load(admin, file, dir, false)?;
    let curated = mobiflux_load(admin, file, dir, true)?;
    Ok(Round {
        reference,
        mobiflux,
        curated,
    })
}

/// `mobiflux run` of an `irve` pipeline on the file: a fresh raw zone, a fresh warehouse.
fn mobiflux_load(admin: &str, file: &Path, dir: &Path, curated: bool) -> Result<Measured> {
    let db = FreshDb::create(admin)?;
    let warehouse = db.url.as_str();
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines)?;
    std::fs::write(
        pipelines.join("bench-irve.toml"),
        format!(
            "name = \"bench-irve\"\npartner = \"bench\"\nformat = \"irve\"\nurl = \"{}\"\nschedule = \"0 0 3 * * *\"\n",
            file.display()
        ),
    )?;
    let raw = dir.join("raw");
    let _ = std::fs::remove_dir_all(&raw);
    let exe = std::env::current_exe()?;
    let migrated = run_measured(
        Command::new(&exe)
            .args(["migrate", "--warehouse", warehouse])
            .stdout(std::process::Stdio::null()),
    )?;
    if !migrated.status.success() {
        bail!("mobiflux migrate failed");
    }
    let measured = run_measured(
        Command::new(&exe)
            .args(["run", "bench-irve"])
            .env("MOBIFLUX_PIPELINES", &pipelines)
            .env("MOBIFLUX_RAW_URL", &raw)
            .env("MOBIFLUX_WAREHOUSE_URL", warehouse)
            .env("MOBIFLUX_CURATED", curated.to_string())
            .stdout(std::process::Stdio::null()),
    )?;
    if !measured.status.success() {
        bail!("mobiflux run failed");
    }
    let _ = std::fs::remove_dir_all(&raw);
    Ok(measured)
}

/// The benchmark itself. `admin` is a PostgreSQL URL whose role may create databases.
/// With `repeat` > 1 the round is run that many times (reference, then mobiflux without
/// and with its curated zone, each in a fresh database) and the median ratio is printed as
/// well: a shared machine's noise moves the loads of one round alike far more than it
/// moves runs minutes apart.
pub fn csv(rows: u64, admin: &str, work: Option<PathBuf>, repeat: u32) -> Result<()> {
    if !admin.starts_with("postgres") {
        bail!("the benchmark compares against psql \\copy: --warehouse must be a postgres:// URL");
    }
    let keep = work.is_some();
    let dir = work.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mobiflux-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("irve-{rows}.csv"));
    let t = Instant::now();
    let bytes = generate_irve(&file, rows)?;
    println!(
        "generated {} rows, {:.1} MB of IRVE-shaped CSV in {:.1} s: {}",
        rows,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        file.display()
    );
    let mut rounds = Vec::new();
    let mut failure = None;
    for _ in 0..repeat.max(1) {
        match one_round(admin, &file, &dir) {
            Ok(r) => rounds.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !keep {
        // A 5M-row file is over 2 GB: a temporary folder is not left behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(e) = failure {
        return Err(e);
    }

    let r = |secs: f64| rows as f64 / secs;
    println!();
    println!(
        "{:<56} {:>8} {:>10} {:>9} {:>9} {:>8}",
        "load path", "seconds", "rows/s", "CPU s", "PG CPU s", "RSS MB"
    );
    let mut ratios = Vec::new();
    let mut curated_ratios = Vec::new();
    for round in &rounds {
        for (name, m) in [
            (
                "psql \\copy into an untyped staging table (reference)",
                &round.reference,
            ),
            (
                "mobiflux run: raw zone + Table Schema + charge_points",
                &round.mobiflux,
            ),
            (
                "  the same + curated Parquet zone (default)",
                &round.curated,
            ),
        ] {
            println!(
                "{:<56} {:>8.2} {:>10.0} {:>9.2} {:>9.2} {:>8.1}",
                name,
                m.secs,
                r(m.secs),
                m.cpu,
                m.pg_cpu,
                m.rss_kib as f64 / 1024.0
            );
        }
        let ratio = round.mobiflux.secs / round.reference.secs;
        let with_curated = round.curated.secs / round.reference.secs;
        println!(
            "{:<56} {:>7.2}x  ({with_curated:.2}x with the curated zone)",
            "  ratio of this round", ratio
        );
        ratios.push(ratio);
        curated_ratios.push(with_curated);
    }
    ratios.sort_by(f64::total_cmp);
    curated_ratios.sort_by(f64::total_cmp);
    let median = percentile(&ratios, 0.5).expect("one round at least");
    let rss = rounds
        .iter()
        .flat_map(|r| [r.mobiflux.rss_kib, r.curated.rss_kib])
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "ratio mobiflux / reference: {median:.2}x the time{} (target <= 1.40x; {:.2}x with the curated Parquet zone); mobiflux peak RSS {:.1} MB (target <= 256 MB)",
        if ratios.len() > 1 {
            format!(" (median of {} rounds)", ratios.len())
        } else {
            String::new()
        },
        percentile(&curated_ratios, 0.5).expect("one round at least"),
        rss as f64 / 1024.0
    );
    Ok(())
}
