//! Issue 13 in real Chromium: every page at desktop and phone sizes, none wider than the
//! screen, each screenshotted; the sign-in page without navigation on a phone; a row menu at
//! the bottom of the screen opens upwards, whole.

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::{
    components::require,
    helpers::{eventually, spawn_app},
    ui::{browser, css, screenshot, signed_in},
};

/// Waits for the page's heading, then says whether anything is wider than the viewport.
async fn overflow(c: &Client) -> Value {
    let drawn = eventually(std::time::Duration::from_secs(10), || async {
        let text: Value =
            c.execute("return document.querySelector('main h1')?.textContent || ''", vec![]).await.unwrap();
        text.as_str().is_some_and(|t| !t.is_empty() && t != "Loading…")
    })
    .await;
    assert!(drawn, "the page drew its heading");
    let script = r#"
        const wide = [...document.querySelectorAll('main *')].filter((e) => {
            const r = e.getBoundingClientRect();
            // Inside a scroll box, being wide is what the box is for.
            return r.right > innerWidth + 1 && !e.closest('.table-wrap, pre');
        }).map((e) => `${e.tagName}.${e.className}`);
        return {page: document.documentElement.scrollWidth, view: innerWidth, wide: wide.slice(0, 5)};"#;
    c.execute(script, vec![]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn issue_13_every_page_fits_desktop_and_phone_screens() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let mut last = String::new();
    for i in 0..12 {
        let r = app.scale_receiver(&format!("receiver-with-a-long-name-{i:02}"), "web", "up", 1, 1, 5).await;
        last = r["id"].as_str().unwrap().to_owned();
    }
    let b = signed_in(&app).await;
    let c = &b.client;
    let pages = [
        ("receivers", "#/receivers".to_owned()),
        ("receiver", format!("#/receivers/{last}")),
        ("new-receiver", "#/receivers/new".into()),
        ("new-host-receiver", "#/receivers/new?kind=scaleHost".into()),
        ("services", "#/services".into()),
        ("pools", "#/pools".into()),
        ("audit", "#/audit".into()),
    ];
    let mut wrong = vec![];
    for (width, height) in [(1280, 860), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        for (name, hash) in &pages {
            c.goto(&format!("{}/ui/{hash}", app.base)).await.unwrap();
            let fit = overflow(c).await;
            screenshot(c, &format!("page-{name}-{width}")).await;
            if fit["page"].as_u64() > fit["view"].as_u64() || fit["wide"] != json!([]) {
                wrong.push(format!("{name} at {width}x{height}: {fit}"));
            }
        }
    }
    assert!(wrong.is_empty(), "wider than the screen:\n{}", wrong.join("\n"));

    // The last row's menu at the bottom of a short window: it opens upwards, whole.
    c.set_window_size(1280, 520).await.unwrap();
    c.goto(&format!("{}/ui/#/receivers", app.base)).await.unwrap();
    let row = css(c, "tr[data-name='receiver-with-a-long-name-11']").await;
    c.execute("arguments[0].scrollIntoView(false)", vec![serde_json::to_value(&row).unwrap()]).await.unwrap();
    row.find(Locator::Css("details.menu summary")).await.unwrap().click().await.unwrap();
    let script = r#"
        const menu = document.querySelector("tr[data-name='receiver-with-a-long-name-11'] details.menu");
        const button = menu.querySelector('summary').getBoundingClientRect();
        const items = menu.querySelector('.items').getBoundingClientRect();
        return {upwards: items.bottom <= button.top + 1, inside: items.top >= 0 && items.bottom <= innerHeight,
                room_below: innerHeight - button.bottom, height: items.height};"#;
    let placed: Value = c.execute(script, vec![]).await.unwrap();
    screenshot(c, "menu-upwards").await;
    assert!(placed["room_below"].as_f64() < placed["height"].as_f64(), "the case is the one meant: {placed}");
    assert_eq!((placed["upwards"].clone(), placed["inside"].clone()), (json!(true), json!(true)), "{placed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn issue_13_the_sign_in_page_on_a_phone() {
    require("chromium");
    require("chromedriver");
    let app = spawn_app().await;
    let b = browser().await;
    let c = &b.client;
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{}/", app.base)).await.unwrap();
    css(c, "#f-token").await;
    let nav: Value =
        c.execute("return getComputedStyle(document.getElementById('nav')).display", vec![]).await.unwrap();
    assert_eq!(nav, json!("none"), "no navigation before signing in");
    let fit = overflow(c).await;
    screenshot(c, "page-sign-in-390").await;
    assert!(fit["page"].as_u64() <= fit["view"].as_u64() && fit["wide"] == json!([]), "{fit}");
}
