//! Host pools (issue 17): providers against real hosts. So far the `command` provider, with
//! scripts whose hosts are real processes (tests/fixtures/hosts/), and the decision on what
//! they list.

use std::{collections::BTreeMap, collections::BTreeSet, path::Path, time::Duration};

use hookd::{
    config::{HostPoolConfig, HostProviderKind},
    domain::{
        host::{DeleteOption, HostDecision, ScaleHostConfig},
        AtBound, ScaleAction,
    },
    hosts::{HostError, Pools},
};

fn script(dir: &Path, name: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec!["env".to_owned(), format!("HOSTS_DIR={}", dir.display())];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.push(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts/").to_owned() + name);
    argv
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pool(dir: &Path, env: &[(&str, &str)], timeout_seconds: u64) -> HostPoolConfig {
    HostPoolConfig {
        name: "w".into(),
        project: "default".into(),
        selector: labels(&[("pool", "w")]),
        min: 1,
        max: 10,
        provider: HostProviderKind::Command,
        list: script(dir, "list.sh", env),
        create: script(dir, "create.sh", env),
        delete: script(dir, "delete.sh", env),
        endpoint: None,
        timeout_seconds,
    }
}

fn alive(pid_file: &Path) -> bool {
    let pid: i32 = std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn config(action: ScaleAction, amount: u32) -> ScaleHostConfig {
    ScaleHostConfig {
        selector: labels(&[("pool", "w"), ("zone", "a")]),
        action,
        amount,
        min: 1,
        max: 5,
        delete_option: DeleteOption::MostRecent,
        at_bound: AtBound::Clamp,
    }
    .validate()
    .unwrap()
}

#[tokio::test]
async fn issue_17_a_command_pool_creates_lists_and_deletes_real_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let pools = Pools::start(&[pool(dir.path(), &[], 30)]).unwrap();
    let w = pools.by_name("w").unwrap();
    let zone_a = labels(&[("pool", "w"), ("zone", "a")]);
    w.provider.create("w-1", &zone_a).await.unwrap();
    // Another zone's host is in the pool, but no receiver of zone a counts it.
    w.provider.create("w-7", &labels(&[("pool", "w"), ("zone", "b")])).await.unwrap();
    assert!(alive(&dir.path().join("w-1.pid")), "the host is a live process");

    let hosts = w.hosts().await.unwrap();
    assert_eq!(hosts.len(), 2);
    let taken: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let HostDecision::Create { from, to, names } =
        config(ScaleAction::Up, 2).decide(ScaleAction::Up, &hosts, (w.min, w.max), "w", &taken)
    else {
        panic!("up creates");
    };
    assert_eq!((from, to, names.clone()), (1, 3, vec!["w-8".to_owned(), "w-9".to_owned()]));
    for name in &names {
        w.provider.create(name, &zone_a).await.unwrap();
    }
    assert_eq!(w.hosts().await.unwrap().len(), 4);

    // w-1 dies: it is the first to go, newest or not.
    let pid: i32 = std::fs::read_to_string(dir.path().join("w-1.pid")).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let hosts = w.hosts().await.unwrap();
    assert!(hosts.iter().any(|h| h.name == "w-1" && !h.healthy), "{hosts:?}");
    let decision = config(ScaleAction::Down, 1).decide(ScaleAction::Down, &hosts, (w.min, w.max), "w", &taken);
    assert_eq!(decision, HostDecision::Delete { from: 3, to: 2, names: vec!["w-1".into()] });
    w.provider.delete("w-9").await.unwrap();
    assert!(!dir.path().join("w-9.pid").exists());
    w.provider.delete("w-9").await.expect("a host already gone is no error");
    let names: Vec<String> = w.hosts().await.unwrap().into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["w-1", "w-7", "w-8"]);
    for name in names {
        w.provider.delete(&name).await.unwrap();
    }
}

#[tokio::test]
async fn issue_17_a_failing_create_says_why_and_a_hung_one_is_killed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let pools = Pools::start(&[pool(dir.path(), &[("HOSTS_FAIL", "w-2"), ("HOSTS_HANG", "w-3")], 2)]).unwrap();
    let w = pools.by_name("w").unwrap();
    let failed = w.provider.create("w-2", &labels(&[("pool", "w")])).await.unwrap_err();
    assert!(
        matches!(&failed, HostError::Failed(m) if m.contains("quota exceeded") && m.contains("exit status: 3")),
        "{failed:?}"
    );
    assert!(alive(&dir.path().join("w-2.pid")), "the half-made host is there to roll back");
    w.provider.delete("w-2").await.unwrap();
    assert!(w.hosts().await.unwrap().is_empty());

    let started = std::time::Instant::now();
    let hung = w.provider.create("w-3", &labels(&[("pool", "w")])).await.unwrap_err();
    assert!(matches!(&hung, HostError::Failed(m) if m.contains("within 2 s")), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for pid_file in ["hung.pid", "hung-child.pid"] {
        let gone =
            crate::helpers::eventually(Duration::from_secs(5), async || !alive(&dir.path().join(pid_file))).await;
        assert!(gone, "{pid_file}: the script's whole process group is killed");
    }
}

#[test]
fn issue_17_pool_configs_are_checked_at_start() {
    let parse = |toml: &str| {
        let mut config: hookd::config::Config = toml::from_str(toml).map_err(|e| e.to_string())?;
        config.finish().map_err(|e| format!("{e:#}"))
    };
    let base = "[[host_pool]]\nname = \"w\"\nselector = { pool = \"w\" }\n";
    let err = parse(&format!("{base}provider = \"command\"\nlist = [\"ls\"]\ncreate = [\"true\"]\n")).unwrap_err();
    assert!(err.contains("needs `delete`"), "{err}");
    let err = parse(&format!("{base}provider = \"swarm\"\n")).unwrap_err();
    assert!(err.contains("needs `create`"), "{err}");
    let err =
        parse("[[host_pool]]\nname = \"w\"\nselector = {}\nprovider = \"swarm\"\ncreate = [\"x\"]\n").unwrap_err();
    assert!(err.contains("selector"), "{err}");
    let err = parse(&format!("{base}provider = \"swarm\"\ncreate = [\"x\"]\nproject = \"nope\"\n")).unwrap_err();
    assert!(err.contains("project \"nope\""), "{err}");
    let err = parse(&format!("{base}provider = \"cloud\"\n")).unwrap_err();
    assert!(err.contains("cloud"), "{err}");
    parse(&format!("{base}provider = \"swarm\"\ncreate = [\"/usr/local/bin/join\"]\nmin = 0\nmax = 3\n")).unwrap();
}
