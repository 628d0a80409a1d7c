//! Issue 17 in the web UI (real Chromium): the pools page with its hosts and receivers, a
//! Scale Hosts receiver made and edited through the form, and its host jobs.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::StatusCode;

use crate::{
    components::require,
    helpers::eventually,
    hosts::{app_with_pool, HostsDir},
    ui::{css, screenshot, set, signed_in, text_appears, text_of},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and chromedriver: ./scripts/test.sh installs them"]
async fn issue_17_pools_hosts_and_host_jobs_in_the_ui() {
    require("chromium");
    require("chromedriver");
    let dir = HostsDir::new();
    let app = app_with_pool(dir.path(), &[], false).await;
    let b = signed_in(&app).await;
    let c = &b.client;
    css(c, "[data-test=empty]").await;

    css(c, "a[data-nav=pools]").await.click().await.unwrap();
    css(c, "section[data-pool='w']").await;
    text_appears(c, "0 (0 healthy), kept between 1 and 4").await;
    text_appears(c, "none yet").await;

    // A Scale Hosts receiver through the form: the kind switches the form.
    c.goto(&format!("{}/ui/#/receivers/new", app.base)).await.unwrap();
    css(c, "#f-driver").await.select_by_value("scaleHost").await.unwrap();
    css(c, "#f-pool").await;
    set(c, "#f-name", "workers-up").await;
    set(c, "#f-hostSelector", "zone").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    let pool_error = text_of(c, "[data-error-for=pool]").await;
    assert!(pool_error.contains("Choose the pool"), "{pool_error:?}");
    css(c, "#f-pool").await.select_by_value("w").await.unwrap();
    css(c, "[data-test=save]").await.click().await.unwrap();
    let labels_error = text_of(c, "[data-error-for=hostSelector]").await;
    assert!(labels_error.contains("\"zone\" is not a label"), "{labels_error:?}");
    assert_eq!(css(c, "#f-hostSelector").await.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    set(c, "#f-hostSelector", "zone=a").await;
    set(c, "#f-amount", "2").await;
    set(c, "#f-max", "4").await;
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "Add 2 hosts, keeping between 1 and 4").await;
    text_appears(c, "pool=w, zone=a").await;
    let (status, list) = app.get("/v1-webhooks/receivers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["scaleHostConfig"]["hostSelector"], serde_json::json!({"pool": "w", "zone": "a"}));

    // Its test trigger starts a job; the page follows the hosts it makes.
    css(c, "[data-test=send-test]").await.click().await.unwrap();
    text_appears(c, "started").await;
    css(c, "tr[data-host='w-2']").await;
    let done = eventually(Duration::from_secs(20), || async {
        let jobs = text_of(c, "[data-test=host-jobs]").await;
        jobs.matches("succeeded").count() == 2
    })
    .await;
    assert!(done, "{}", text_of(c, "[data-test=host-jobs]").await);
    assert!(text_of(c, "[data-test=host-jobs]").await.contains("create (pool w)"));
    screenshot(c, "host-receiver").await;

    // Edit: the pool is chosen and the extra labels are those beyond the pool's.
    let url = c.current_url().await.unwrap();
    c.goto(&format!("{}/edit", url.as_str())).await.unwrap();
    css(c, "#f-pool").await;
    assert_eq!(css(c, "#f-pool").await.prop("value").await.unwrap().as_deref(), Some("w"));
    assert_eq!(css(c, "#f-hostSelector").await.prop("value").await.unwrap().as_deref(), Some("zone=a"));
    css(c, "input[name=action][value=down]").await.click().await.unwrap();
    css(c, "#f-deleteOption").await.select_by_value("leastRecent").await.unwrap();
    css(c, "[data-test=save]").await.click().await.unwrap();
    text_appears(c, "Remove 2 hosts").await;
    text_appears(c, "then the oldest").await;

    // The pools page shows the hosts made, and the receiver acting on the pool.
    css(c, "a[data-nav=pools]").await.click().await.unwrap();
    css(c, "tr[data-host='w-1']").await;
    text_appears(c, "2 (2 healthy)").await;
    let receivers = c.find(Locator::Css("section[data-pool='w'] dd a")).await.unwrap();
    assert_eq!(receivers.text().await.unwrap(), "workers-up");
    assert!(text_of(c, "tr[data-host='w-2']").await.contains("zone=a"));
    screenshot(c, "pools").await;
}
