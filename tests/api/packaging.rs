//! Issue 13: the Debian package (`packaging/build-deb.sh`). It is built from the tested
//! binary, installed with dpkg on this machine, checked (files, conffile, man page,
//! completions, the unit through `systemd-analyze verify`), run as the unit runs it, and purged.

use std::{path::Path, process::Command, time::Duration};

use crate::{
    components::{free_port, require},
    helpers::eventually,
};

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{program} {args:?}: {said}");
    said
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "hookd"]).output();
    }
}

#[tokio::test]
#[ignore = "needs cargo-deb, dpkg, systemd-analyze and root: ./scripts/test.sh installs them"]
async fn the_deb_installs_a_hardened_unit_man_page_completions_and_a_working_binary() {
    for tool in ["cargo-deb", "dpkg", "systemd-analyze"] {
        require(tool);
    }
    let out = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build-deb.sh");
    let output =
        Command::new(script).arg(out.path()).env("HOOKD_PROFILE", "dev").env("HOOKD_NO_BUILD", "1").output().unwrap();
    assert!(output.status.success(), "build-deb.sh: {}", String::from_utf8_lossy(&output.stderr));
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    let deb = deb.expect("a .deb was written");
    let deb = deb.to_str().unwrap();

    let info = run("dpkg-deb", &["--field", deb, "Package", "Depends", "Conffiles"]);
    assert!(info.contains("Package: hookd") && info.contains("libc6"), "{info}");
    let files = run("dpkg-deb", &["--contents", deb]);
    for path in [
        "./usr/bin/hookd",
        "./usr/lib/systemd/system/hookd.service",
        "./etc/hookd/hookd.toml",
        "./usr/share/man/man1/hookd.1.gz",
        "./usr/share/man/man1/hookd-receivers-create.1.gz",
        "./usr/share/bash-completion/completions/hookd",
        "./usr/share/zsh/vendor-completions/_hookd",
        "./usr/share/fish/vendor_completions.d/hookd.fish",
        "./usr/share/doc/hookd/copyright",
        "./usr/share/doc/hookd/config.example.toml",
    ] {
        assert!(files.lines().any(|l| l.ends_with(path)), "{path} is in the package: {files}");
    }

    let _installed = Installed;
    let said = run("dpkg", &["--install", deb]);
    let told = if Path::new("/run/systemd/system").is_dir() {
        "Created the admin API token"
    } else {
        "systemd does not run here, so it was\nnot started. Run what its unit runs"
    };
    assert!(said.contains(told), "postinst says how to start it and where the token is: {said}");
    let size = std::fs::metadata("/usr/bin/hookd").unwrap().len();
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_hookd")).unwrap().len();
    assert!(size < built, "the packaged binary is stripped: {size} bytes, built {built}");
    let version = run("/usr/bin/hookd", &["--version"]);
    assert!(version.starts_with("hookd "), "{version}");
    let man = run("sh", &["-c", "gzip -dc /usr/share/man/man1/hookd.1.gz"]);
    assert!(man.contains(".TH hookd 1") && man.contains("receivers"), "{man}");
    let complete = run("bash", &["-c", ". /usr/share/bash-completion/completions/hookd && complete -p hookd"]);
    assert!(complete.contains("hookd"), "{complete}");
    let conffiles = run("dpkg-query", &["--showformat=${Conffiles}", "--show", "hookd"]);
    assert!(conffiles.contains("/etc/hookd/hookd.toml"), "the config is a conffile: {conffiles}");

    let unit_path = "/usr/lib/systemd/system/hookd.service";
    let unit = std::fs::read_to_string(unit_path).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=hookd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ProtectProc=invisible",
        "UMask=0077",
    ] {
        assert!(unit.contains(hardening), "{hardening}: {unit}");
    }
    let verified = Command::new("systemd-analyze").args(["verify", "--man=no", unit_path]).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    assert!(verified.status.success() && said.trim().is_empty(), "systemd-analyze: {said}");

    // The unit's command line, on the packaged config, with a scratch data directory and port.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    let at = words.iter().position(|w| w == "--data-dir").expect("the unit names the data directory");
    words[at + 1] = data.path().to_str().unwrap().to_owned();
    words.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
    let mut hookd = tokio::process::Command::new(&words[0])
        .args(&words[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let healthy = eventually(Duration::from_secs(20), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    hookd.start_kill().unwrap();
    let _ = hookd.wait().await;
    assert!(healthy, "the packaged hookd, run as its unit runs it, never answered /healthz");

    // What the service would have made, left for the purge to remove.
    std::fs::create_dir_all("/var/lib/hookd").unwrap();
    std::fs::write("/var/lib/hookd/sealing.key", [0u8; 32]).unwrap();
    run("dpkg", &["--purge", "hookd"]);
    assert!(!Path::new("/usr/bin/hookd").exists() && !Path::new("/etc/hookd/hookd.toml").exists(), "purged");
    assert!(!Path::new("/var/lib/hookd").exists(), "and its data directory");
}
