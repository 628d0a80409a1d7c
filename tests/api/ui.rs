//! The web UI in a real headless Chromium, driven through WebDriver (chromedriver):
//! sign in, add a receiver, copy its URL, trigger it, watch history and scale, clone, edit,
//! disable, delete. Screenshots of the main pages go to target/ui-screenshots/.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    components::{free_port, require},
    helpers::{eventually, read, spawn_app, TestApp},
};

pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    /// Chromium's TMPDIR, so its scratch directories go with the test (issue 13: no /tmp leftovers).
    _tmp: tempfile::TempDir,
}

/// Chromium outlives a killed chromedriver: its processes (chromedriver's descendants, and
/// any carrying the test's profile directory) go with the test.
impl Drop for Browser {
    fn drop(&mut self) {
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let mut parents = std::collections::HashMap::new();
        let mut killed: Vec<i32> = self._driver.id().map(|p| p as i32).into_iter().collect();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|arg| arg == profile.as_bytes()) {
                killed.push(pid);
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            parents.insert(pid, ppid.unwrap_or(0));
        }
        // The whole tree, taken before any kill reparents it (the network service writes the
        // profile's disk cache, and carries no --user-data-dir).
        let mut at = 0;
        while at < killed.len() {
            let parent = killed[at];
            let children: Vec<i32> =
                parents.iter().filter(|(pid, p)| **p == parent && !killed.contains(pid)).map(|(pid, _)| *pid).collect();
            killed.extend(children);
            at += 1;
        }
        for pid in &killed {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        // Until they are gone (or zombies): one still running would write its profile again
        // after the directory is removed, and leave it in /tmp.
        let alive = |pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        };
        for _ in 0..100 {
            if !killed.iter().any(alive) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub async fn browser() -> Browser {
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let http = reqwest::Client::new();
    let status = format!("http://127.0.0.1:{port}/status");
    assert!(eventually(Duration::from_secs(20), || async { http.get(&status).send().await.is_ok() }).await);
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,860", format!("--user-data-dir={}", profile.path().display())]}});
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    Browser { client, _driver: driver, _profile: profile, _tmp: tmp }
}

/// A browser signed in to `app` with its admin token.
pub async fn signed_in(app: &TestApp) -> Browser {
    let b = browser().await;
    b.client.goto(&format!("{}/", app.base)).await.unwrap();
    set(&b.client, "#f-token", &app.token).await;
    css(&b.client, "form[data-test=sign-in] button").await.click().await.unwrap();
    css(&b.client, "main h1").await;
    b
}

pub async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
}

/// Waits until the page's text contains `needle`.
pub async fn text_appears(c: &Client, needle: &str) {
    let found = eventually(Duration::from_secs(10), || async { text_of(c, "main").await.contains(needle) }).await;
    let text = text_of(c, "main").await;
    assert!(found, "{needle:?} did not appear; the page says:\n{text}");
}

/// The text of the element at `selector` now, or "" (absent, or re-rendered under us).
pub async fn text_of(c: &Client, selector: &str) -> String {
    match c.find(Locator::Css(selector)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

pub async fn set(c: &Client, selector: &str, value: &str) {
    let input = css(c, selector).await;
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn receivers(app: &TestApp) -> Vec<Value> {
    app.get("/v1-webhooks/receivers").await.1["data"].as_array().unwrap().clone()
}

async fn open_menu_item(c: &Client, receiver: &str, item: &str) {
    let row = css(c, &format!("tr[data-name='{receiver}']")).await;
    row.find(Locator::Css("details.menu summary")).await.unwrap().click().await.unwrap();
    row.find(Locator::Css(&format!("[data-test='menu-{item}']"))).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh"]
async fn the_webhooks_flow_in_chromium() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let b = browser().await;
    let c = &b.client;

    c.goto(&format!("{}/", app.base)).await.unwrap();
    set(c, "#f-token", "not-a-token").await;
    css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
    text_appears(c, "not valid").await;
    set(c, "#f-token", &app.token).await;
    css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
    css(c, "[data-test=empty]").await;
    text_appears(c, "A receiver hook is a URL").await;
    screenshot(c, "empty").await;

    // Add Receiver through the form.
    css(c, "[data-test=add-receiver]").await.click().await.unwrap();
    set(c, "#f-name", "web-up").await;
    css(c, "#f-serviceId option[value=web]").await.click().await.unwrap();
    set(c, "#f-max", "5").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "Scale up web by 1, between 1 and 5").await;
    text_appears(c, "No triggers yet.").await;

    // The list: State, Name, Kind, Detail, Trigger URL with a copy button.
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    let row = css(c, "tr[data-name='web-up']").await;
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains("active") && row_text.contains("Scale a Service"), "{row_text}");
    let url = row.find(Locator::Css("[data-test=trigger-url]")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(url.contains("/v1-webhooks/endpoint?token="), "{url}");
    row.find(Locator::Css("[data-test=copy]")).await.unwrap().click().await.unwrap();
    text_appears(c, "Copied").await;

    // Trigger it from outside; the receiver page shows the history row without a reload.
    let (status, answer) = app.trigger(&url).await;
    assert_eq!((status, answer["to"].as_u64()), (StatusCode::OK, Some(2)));
    let id = receivers(&app).await[0]["id"].as_str().unwrap().to_owned();
    c.goto(&format!("{}/ui/#/receivers/{id}", app.base)).await.unwrap();
    text_appears(c, "1 → 2").await;
    css(c, "[data-test=send-test]").await.click().await.unwrap();
    text_appears(c, "2 → 3").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.find_all(Locator::Css("[data-test=history-row]")).await.map(|r| r.len()).unwrap_or(0) == 2
        })
        .await
    );
    text_appears(c, "hookd-web-up").await;
    screenshot(c, "receiver").await;

    // Services: the new scale, live.
    c.goto(&format!("{}/ui/#/services", app.base)).await.unwrap();
    let scale = css(c, "tr[data-service=web] [data-test=scale]").await;
    assert_eq!(scale.text().await.unwrap(), "3");
    assert!(
        eventually(Duration::from_secs(10), || async {
            text_of(c, "tr[data-service=web] [data-test=running]").await == "3"
        })
        .await
    );
    screenshot(c, "services").await;

    // Clone keeps the Kind and the config (Rancher's clone forgot the Kind).
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    open_menu_item(c, "web-up", "clone").await;
    assert_eq!(css(c, "#f-driver").await.prop("value").await.unwrap().as_deref(), Some("scaleService"));
    assert_eq!(css(c, "#f-serviceId").await.prop("value").await.unwrap().as_deref(), Some("web"));
    assert_eq!(css(c, "#f-name").await.prop("value").await.unwrap().as_deref(), Some("web-up-copy"));
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "Scale up web by 1, between 1 and 5").await;
    let all = receivers(&app).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["scaleServiceConfig"]["max"], 5);
    assert_ne!(all[0]["url"], all[1]["url"]);

    // Edit: a validation error shows next to its field, then a valid change saves.
    c.goto(&format!("{}/ui/#/receivers/{id}/edit", app.base)).await.unwrap();
    set(c, "#f-max", "1").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            text_of(c, "[data-error-for=max]").await.contains("greater than min")
        })
        .await
    );
    set(c, "#f-max", "8").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "between 1 and 8").await;
    assert_eq!(receivers(&app).await[0]["url"].as_str(), Some(url.as_str()), "editing keeps the URL");

    // Disable, then delete with confirmation.
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    open_menu_item(c, "web-up", "disable").await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            text_of(c, "tr[data-name='web-up']").await.contains("inactive")
        })
        .await
    );
    screenshot(c, "receiver-hooks").await;
    open_menu_item(c, "web-up", "delete").await;
    c.accept_alert().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { receivers(&app).await.len() == 1 }).await);
    let (status, _) = app.trigger(&url).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the deleted receiver's URL is revoked");

    // A phone-sized window keeps the page usable.
    c.set_window_size(390, 800).await.unwrap();
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    css(c, "tr[data-name='web-up-copy']").await;
    screenshot(c, "receiver-hooks-phone").await;
    let _ = b.client.clone().close().await;
}

#[tokio::test]
async fn sessions_need_the_csrf_token_to_change_anything() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let response =
        http.post(format!("{}/ui/session", app.base)).json(&json!({"token": app.token})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session_cookie = cookie.split(';').next().unwrap().to_owned();
    let (_, body) = read(response).await;
    let csrf = body["csrf"].as_str().unwrap().to_owned();

    let list =
        http.get(format!("{}/v1-webhooks/receivers", app.base)).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK, "reading needs only the cookie");
    let receiver =
        json!({"name": "x", "driver": "scaleService", "scaleServiceConfig": {"serviceId": "web", "action": "up"}});
    let forged = http
        .post(format!("{}/v1-webhooks/receivers", app.base))
        .header("cookie", &session_cookie)
        .json(&receiver)
        .send()
        .await
        .unwrap();
    let (status, err) = read(forged).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf")), "{err}");
    let real = http
        .post(format!("{}/v1-webhooks/receivers", app.base))
        .header("cookie", &session_cookie)
        .header("x-csrf-token", &csrf)
        .json(&receiver)
        .send()
        .await
        .unwrap();
    assert_eq!(real.status(), StatusCode::OK);
    let out = http.delete(format!("{}/ui/session", app.base)).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after =
        http.get(format!("{}/v1-webhooks/receivers", app.base)).header("cookie", &session_cookie).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "signed out");
    let page = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("/ui/app.js"), "/ redirects to the UI");
}

/// Issue 12: an upgrade receiver's page shows its rollout settings and its jobs' progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn an_upgrade_receivers_page_shows_its_jobs() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let (status, r) = app
        .create_receiver(json!({"name": "deploy", "driver": "serviceUpgrade",
            "serviceUpgradeConfig": {"serviceSelector": {"app": "web"}, "tag": "2.0", "intervalMillis": 1}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, answer) =
        app.notify(r["url"].as_str().unwrap(), &json!({"image": "example/web:2.0"}).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let b = signed_in(&app).await;
    let c = &b.client;
    css(c, "tr[data-name='deploy']").await;
    assert!(text_of(c, "tr[data-name='deploy']").await.contains("Upgrade Services"));
    c.goto(&format!("{}/ui/#/receivers/{}", app.base, r["id"].as_str().unwrap())).await.unwrap();
    text_appears(c, "Services labelled").await;
    text_appears(c, "1 at a time, 1 s apart").await;
    css(c, "[data-test=job-row]").await;
    text_appears(c, "example/web:1.0 → example/web:2.0").await;
    let done =
        eventually(Duration::from_secs(15), || async { text_of(c, "[data-test=jobs]").await.contains("succeeded") })
            .await;
    assert!(done, "{}", text_of(c, "[data-test=jobs]").await);
    assert!(text_of(c, "main").await.contains("job"), "the history names the job");
    screenshot(c, "upgrade-receiver").await;
}

/// Issue 13: a row menu opens fully inside the viewport (it was clipped by the table's
/// scroll box), at desktop and phone sizes; the sign-in page hides the navigation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn row_menus_are_whole_and_visible_at_desktop_and_phone_sizes() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    for name in ["first", "second"] {
        app.scale_receiver(name, "web", "up", 1, 1, 5).await;
    }
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/", app.base)).await.unwrap();
    let nav_shown: Value =
        c.execute("return getComputedStyle(document.getElementById('nav')).display", vec![]).await.unwrap();
    assert_eq!(nav_shown, json!("none"), "the sign-in page hides the navigation");
    set(c, "#f-token", &app.token).await;
    css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
    css(c, "tr[data-name='first']").await; // signed in: navigating sooner races the session cookie
    for (width, height) in [(1280, 860), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
        for name in ["first", "second"] {
            let row = css(c, &format!("tr[data-name='{name}']")).await;
            row.find(Locator::Css("details.menu summary")).await.unwrap().click().await.unwrap();
            // Every item: inside the viewport, and the element actually drawn at its centre.
            let script = r#"
                const menu = document.querySelector(`tr[data-name='${arguments[0]}'] details.menu`);
                return [...menu.querySelectorAll('.items button')].map((item) => {
                    const r = item.getBoundingClientRect();
                    const inside = r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth && r.height > 0;
                    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                    return [item.textContent, inside && (top === item || item.contains(top))];
                });"#;
            // Looked at until drawn (a loaded machine lays the page out late), for 3 s at most.
            let mut items: Value = Value::Null;
            for _ in 0..30 {
                items = c.execute(script, vec![json!(name)]).await.unwrap();
                if items.as_array().is_some_and(|i| i.len() == 6 && i.iter().all(|i| i[1] == true)) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let items = items.as_array().unwrap();
            assert_eq!(items.len(), 6, "{items:?}");
            assert!(items.iter().all(|i| i[1] == true), "{width}x{height} {name}: {items:?}");
            screenshot(c, &format!("menu-{name}-{width}")).await;
            row.find(Locator::Css("details.menu summary")).await.unwrap().click().await.unwrap();
        }
    }
}

/// Issue 13: the receiver page regenerates its URL; a field's error is its description and
/// marks it invalid; a new page moves focus to its heading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn regenerate_on_the_page_errors_tied_to_fields_and_focus_on_headings() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let r = app.scale_receiver("web-up", "web", "up", 1, 1, 5).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/", app.base)).await.unwrap();
    set(c, "#f-token", &app.token).await;
    css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
    css(c, "tr[data-name='web-up']").await;
    let focused: Value = c.execute("return document.activeElement.tagName", vec![]).await.unwrap();
    assert_eq!(focused, json!("H1"), "focus moves to the new page's heading");

    c.goto(&format!("{}/ui/#/receivers/{}", app.base, r["id"].as_str().unwrap())).await.unwrap();
    css(c, "[data-test=regenerate]").await;
    c.execute("window.confirm = () => true; document.querySelector('[data-test=regenerate]').click()", vec![])
        .await
        .unwrap();
    // Read in the page: the page re-renders, and a held element can go stale.
    let changed = eventually(Duration::from_secs(10), || async {
        let url: Value =
            c.execute("return document.querySelector('[data-test=trigger-url]')?.value || ''", vec![]).await.unwrap();
        let url = url.as_str().unwrap_or("");
        !url.is_empty() && url != r["url"].as_str().unwrap()
    })
    .await;
    assert!(changed, "the page shows a new URL");
    let (status, _) = app.trigger(r["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the old URL is revoked");

    c.goto(&format!("{}/ui/#/receivers/new", app.base)).await.unwrap();
    set(c, "#f-name", "bad").await;
    css(c, "#f-serviceId option[value=web]").await.click().await.unwrap();
    set(c, "#f-min", "5").await;
    set(c, "#f-max", "2").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "Max must be greater than min").await;
    let max = css(c, "#f-max").await;
    assert_eq!(max.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    let described: Value = c
        .execute("return document.getElementById(document.getElementById('f-max').getAttribute('aria-describedby').split(' ')[0]).textContent", vec![])
        .await
        .unwrap();
    assert!(described.as_str().unwrap().contains("Max must be greater than min"), "{described}");
}

/// Issue 13: the row menu follows the menu button pattern: Enter opens it on its first
/// item, arrows wrap, Home and End jump, Escape closes it and gives focus back to the button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn the_row_menu_works_from_the_keyboard() {
    use fantoccini::key::Key;
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    app.scale_receiver("keys", "web", "up", 1, 1, 5).await;
    let b = browser().await;
    let c = &b.client;
    c.goto(&format!("{}/", app.base)).await.unwrap();
    set(c, "#f-token", &app.token).await;
    css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
    css(c, "tr[data-name='keys']").await; // signed in: navigating sooner races the session cookie
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    css(c, "tr[data-name='keys'] details.menu summary").await;
    c.execute("document.querySelector(\"tr[data-name='keys'] details.menu summary\").focus()", vec![]).await.unwrap();
    // What has focus, and whether the menu is open (as the button says).
    let state = || async {
        let script = r#"const s = document.querySelector("tr[data-name='keys'] details.menu summary");
            const a = document.activeElement;
            return [a === s ? "button" : a.getAttribute("data-test"), s.getAttribute("aria-expanded")];"#;
        let v: Value = c.execute(script, vec![]).await.unwrap();
        (v[0].as_str().unwrap_or("").to_owned(), v[1] == "true")
    };
    let press = |key: Key| async move {
        c.active_element().await.unwrap().send_keys(&key.to_string()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    press(Key::Enter).await;
    assert_eq!(state().await, ("menu-view".to_owned(), true), "Enter opens the menu on its first item");
    press(Key::Down).await;
    assert_eq!(state().await.0, "menu-clone");
    press(Key::End).await;
    assert_eq!(state().await.0, "menu-delete");
    press(Key::Down).await;
    assert_eq!(state().await.0, "menu-view", "ArrowDown wraps to the first item");
    press(Key::Up).await;
    assert_eq!(state().await.0, "menu-delete", "ArrowUp wraps to the last item");
    press(Key::Home).await;
    assert_eq!(state().await.0, "menu-view");
    press(Key::Escape).await;
    assert_eq!(state().await, ("button".to_owned(), false), "Escape closes and returns focus");
    press(Key::Up).await;
    assert_eq!(state().await, ("menu-delete".to_owned(), true), "ArrowUp on the button opens on the last item");
    press(Key::Up).await;
    press(Key::Enter).await;
    // Regenerate URL asks first; dismiss its confirmation.
    let confirm = c.get_alert_text().await;
    if confirm.is_ok() {
        c.dismiss_alert().await.unwrap();
    }
    assert!(confirm.unwrap_or_default().contains("Regenerate"), "Enter on an item runs it");
}

/// Issue 14: the UI says who is signed in, shows owners the audit log, and hides from a
/// read-only token what it may not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn the_ui_shows_who_is_signed_in_and_hides_what_the_role_may_not_do() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    app.scale_receiver("watched", "web", "up", 1, 1, 5).await;
    let (status, ro) = app
        .request(
            reqwest::Method::POST,
            "/v1-webhooks/tokens",
            Some(json!({"name": "viewer", "role": "read-only", "projectId": "default"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ro}");
    let b = browser().await;
    let c = &b.client;
    for (token, who, owner) in [
        (app.token.as_str(), "admin · owner of every project", true),
        (ro["token"].as_str().unwrap(), "viewer · read-only of project default", false),
    ] {
        c.goto(&format!("{}/ui/#/signin", app.base)).await.unwrap();
        set(c, "#f-token", token).await;
        css(c, "form[data-test=sign-in] button").await.click().await.unwrap();
        css(c, "tr[data-name='watched']").await;
        assert_eq!(text_of(c, "[data-test=whoami]").await, who);
        let audit_shown: Value =
            c.execute("return !document.getElementById('nav-audit').hidden", vec![]).await.unwrap();
        assert_eq!(audit_shown, json!(owner), "{who}");
        let add: Value =
            c.execute("return !!document.querySelector('[data-test=add-receiver]')", vec![]).await.unwrap();
        assert_eq!(add, json!(owner), "{who}: Add Receiver");
        if owner {
            c.goto(&format!("{}/ui/#/audit", app.base)).await.unwrap();
            text_appears(c, "receiver.create").await;
            text_appears(c, "token.create").await;
            screenshot(c, "audit").await;
        }
        css(c, "#sign-out").await.click().await.unwrap();
    }
}
