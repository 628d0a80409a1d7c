//! Issue 13, after a review of the CLI: names in any project, sender checks from flags,
//! errors that name the server and the cause, and a man page per command.

use reqwest::Method;
use serde_json::json;

use crate::{cli::hookd, helpers::spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_names_in_other_projects_and_sender_checks_from_flags() {
    let app = spawn_app().await;
    let (status, _) =
        app.request(Method::POST, "/v1-webhooks/projects", Some(json!({"name": "team", "backend": "local"}))).await;
    assert!(status.is_success());
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "a-bearer-secret-for-the-cli\n").unwrap();
    let secret_file = secret_file.to_str().unwrap();
    let create = [
        "receivers",
        "create",
        "--project",
        "team",
        "--name",
        "w",
        "--service",
        "web",
        "--action",
        "up",
        "--max",
        "4",
        "--sender-verification",
        "bearer",
        "--sender-secret-file",
        secret_file,
    ];
    let (ok, out, err) = hookd(&app, &create).await;
    assert!(ok, "{err}");
    assert!(out.contains("sender:   bearer") && out.contains("project:  team"), "{out}");
    assert!(!out.contains("a-bearer-secret"), "the secret is not shown: {out}");

    let (ok, _, err) = hookd(&app, &["receivers", "get", "w"]).await;
    assert!(!ok && err.contains("no receiver named \"w\" in project default"), "{err}");
    for args in [
        &["receivers", "get", "w", "--project", "team"][..],
        &["executions", "w", "--project", "team"],
        &["jobs", "list", "w", "--project", "team"],
    ] {
        let (ok, out, err) = hookd(&app, args).await;
        assert!(ok, "{args:?}: {out}{err}");
    }
    // The CLI sends no proof: the sender check refuses it, and says so.
    let (ok, _, err) = hookd(&app, &["trigger", "w", "--project", "team"]).await;
    assert!(!ok && err.contains("sender_unverified"), "{err}");
    // A copy keeps the check, with its secret given again.
    let (ok, _, err) = hookd(&app, &["receivers", "clone", "w", "--project", "team", "--name", "w2"]).await;
    assert!(!ok && err.contains("--sender-secret-file"), "{err}");
    let clone = ["receivers", "clone", "w", "--project", "team", "--name", "w2", "--sender-secret-file", secret_file];
    let (ok, out, err) = hookd(&app, &clone).await;
    assert!(ok && out.contains("sender:   bearer"), "{out}{err}");
    let (ok, out, err) =
        hookd(&app, &["receivers", "update", "w", "--project", "team", "--sender-verification", "none"]).await;
    assert!(ok && out.contains("sender:   none"), "{out}{err}");
    let (ok, out, err) = hookd(&app, &["trigger", "w", "--project", "team"]).await;
    assert!(ok && out.starts_with("scaled 1 -> 2"), "{out}{err}");

    let (ok, _, err) = hookd(&app, &["receivers", "update", "w", "--sender-secret-file", secret_file]).await;
    assert!(!ok && err.contains("--sender-verification"), "a secret needs its check: {err}");
    let none = [
        "receivers",
        "update",
        "w",
        "--project",
        "team",
        "--sender-verification",
        "none",
        "--sender-secret-file",
        secret_file,
    ];
    let (ok, _, err) = hookd(&app, &none).await;
    assert!(!ok && err.contains("takes no secret"), "{err}");
    let (ok, _, err) = hookd(&app, &["receivers", "update", "w", "--sender-verification", "hmac"]).await;
    assert!(!ok && err.contains("bearer, header:NAME, github, standardWebhooks or none"), "{err}");
}

#[tokio::test]
async fn issue_13_errors_name_the_server_and_the_cause() {
    let app = spawn_app().await;
    // Nothing listens on a port just freed.
    let closed = crate::components::free_port();
    let url = format!("http://127.0.0.1:{closed}/v1-webhooks/endpoint?token=secret-looking-token");
    let (ok, _, err) = hookd(&app, &["trigger", &url]).await;
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("http://127.0.0.1:{closed}")) && err.contains("refused"), "{err}");
    assert!(!err.contains("secret-looking-token"), "the token stays out of errors: {err}");
    let base = format!("http://127.0.0.1:{closed}");
    let (ok, _, err) = hookd(&app, &["services", "--url", &base]).await;
    assert!(!ok && err.contains(&format!("hookd at {base}")) && err.contains("refused"), "{err}");

    // Something that is not hookd answers 200 with a web page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let not_hookd = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let page = "<html>a login page</html>";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let (ok, out, err) = hookd(&app, &["services", "--url", &not_hookd]).await;
    assert!(!ok && err.contains("not JSON (text/html)") && err.contains("HOOKD_URL"), "{out}{err}");

    let empty = tempfile::NamedTempFile::new().unwrap();
    let (ok, _, err) = hookd(&app, &["services", "--cacert", empty.path().to_str().unwrap()]).await;
    assert!(!ok && err.contains("holds no PEM certificate"), "{err}");
}

#[tokio::test]
async fn issue_13_a_man_page_per_command() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = hookd(&app, &["man", "--dir", dir.path().to_str().unwrap()]).await;
    assert!(ok, "{err}");
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert!(page("hookd.1").contains(".TH hookd 1"));
    let create = page("hookd-receivers-create.1");
    assert!(create.contains("sender\\-verification") && create.contains("Create a scaleService receiver"), "{create}");
    let pages = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(pages > 30, "one page per command: {pages}");
}
