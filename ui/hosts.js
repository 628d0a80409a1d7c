// hookd web UI: host pools and scaleHost receivers (loaded after app.js, whose helpers it uses).
"use strict";

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

// "zone=a, disk=ssd" → {zone: "a", disk: "ssd"}; a pair without "=" is the user's mistake.
function parseLabels(text) {
  const labels = {};
  for (const pair of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at < 1) {
      throw new ApiError({ message: `"${pair}" is not a label: write key=value, separated by commas`, field: "scaleHostConfig.hostSelector" }, 400);
    }
    labels[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return labels;
}

// The pool a selector names: the one whose labels it all carries.
function poolOf(pools, selector) {
  return pools.find((p) => Object.entries(p.selector).every(([k, v]) => selector[k] === v));
}

async function hostFormPage(source, id, cloneId) {
  const pools = (await api("GET", "/v1-webhooks/pools")).data;
  const c = source ? source.scaleHostConfig : { action: "up", amount: 1, min: 1, max: 10, deleteOption: "mostRecent", hostSelector: {}, cooldownUpSeconds: null, cooldownDownSeconds: null, dedupSeconds: 600, onResolved: "ignore" };
  const base = formBase(source, id, cloneId, "scaleHost", c);
  const chosen = poolOf(pools, c.hostSelector);
  const pool = h("select", { id: "f-pool", name: "pool", required: true },
    h("option", { value: "", text: pools.length ? "Choose a pool" : "No pools: declare one in the config file" }),
    pools.map((p) => h("option", { value: p.name, selected: chosen === p, text: `${p.name} (${labelText(p.selector)}; ${p.hosts.length} of ${p.min}–${p.max} hosts)` })));
  const extra = Object.fromEntries(Object.entries(c.hostSelector).filter(([k]) => !chosen || !(k in chosen.selector)));
  const labels = h("input", { type: "text", id: "f-hostSelector", name: "hostSelector", value: labelText(extra), placeholder: "e.g. zone=a" });
  const deleteOption = h("select", { id: "f-deleteOption", name: "deleteOption" },
    h("option", { value: "mostRecent", text: "The newest (mostRecent)", selected: c.deleteOption === "mostRecent" }),
    h("option", { value: "leastRecent", text: "The oldest (leastRecent)", selected: c.deleteOption === "leastRecent" }));
  const form = h("form", { class: "grid", novalidate: true, "data-test": "receiver-form" },
    field("name", "Name", base.name),
    field("driver", "Kind", base.kind),
    base.action,
    field("pool", "Host pool", pool),
    field("hostSelector", "Also labelled", labels, "Only the pool's hosts with these labels count; new hosts get them"),
    field("amount", "By", numberInput("amount", c.amount, 1), "Hosts added or removed per trigger"),
    field("min", "Minimum hosts", numberInput("min", c.min, 1)),
    field("max", "Maximum hosts", numberInput("max", c.max, 2)),
    field("deleteOption", "Remove first", deleteOption, "On scale-down; unhealthy hosts always go first"),
    base.safety,
    base.sender.fields,
    base.buttons);
  showForm(base, id, form, "scaleHostConfig", () => {
    const picked = pools.find((p) => p.name === pool.value);
    if (!picked) throw new ApiError({ message: "Choose the pool whose hosts this receiver adds and removes.", field: "scaleHostConfig.pool" }, 400);
    return {
      hostSelector: { ...parseLabels(labels.value), ...picked.selector }, amount: formInt(form, "amount"), min: formInt(form, "min"),
      max: formInt(form, "max"), deleteOption: deleteOption.value, ...safetyValues(form),
    };
  });
}

function hostConfigRows(c, row) {
  const verb = c.action === "up" ? "Add" : "Remove";
  return [
    row("Hosts labelled", labelText(c.hostSelector)),
    row("Action", `${verb} ${c.amount} host${c.amount === 1 ? "" : "s"}, keeping between ${c.min} and ${c.max}`),
    c.action === "down" && row("Removes first", `unhealthy hosts, then the ${c.deleteOption === "leastRecent" ? "oldest" : "newest"}`),
    row("Cooldowns", `up ${cooldownText(c.cooldownUpSeconds, 0)}, down ${cooldownText(c.cooldownDownSeconds, 300)}`),
    row("On resolved", c.onResolved),
  ].filter(Boolean);
}

function hostJobsTable(jobs) {
  if (jobs.length === 0) return h("p", { class: "muted", "data-test": "no-jobs", text: "No host changes yet." });
  return h("div", { class: "table-wrap" }, h("table", { "data-test": "host-jobs" },
    h("thead", {}, h("tr", {}, ["Started", "State", "Host", "Change", "Error"].map((t) => h("th", { text: t })))),
    h("tbody", {}, jobs.flatMap((j) => (j.hosts?.steps || []).map((s) => h("tr", { "data-test": "host-job-row", "data-job": j.id, "data-host": s.name },
      h("td", { text: new Date(j.created).toLocaleString() }),
      h("td", {}, badge(s.state === "done" ? "succeeded" : s.state === "pending" ? j.state : s.state)),
      h("td", { class: "name", text: s.name }),
      h("td", { text: `${s.action} (pool ${j.hosts.pool})` }),
      h("td", { class: "muted", text: s.error || "" })))))));
}

async function poolsPage() {
  const body = h("div", {});
  const refresh = async () => {
    const [pools, receivers] = await Promise.all([api("GET", "/v1-webhooks/pools"), api("GET", "/v1-webhooks/receivers?limit=1000")]);
    if (pools.data.length === 0) {
      body.replaceChildren(h("section", { class: "panel empty", "data-test": "no-pools" },
        h("h2", { text: "No host pools" }),
        h("p", { class: "muted", text: "A host pool is declared in hookd's config file ([[host_pool]]: its labels, bounds and provider). Then a Scale Hosts receiver adds and removes its hosts." })));
      return;
    }
    body.replaceChildren(...pools.data.map((p) => {
      const acting = receivers.data.filter((r) => r.driver === "scaleHost" && poolOf([p], r.scaleHostConfig.hostSelector));
      const healthy = p.hosts.filter((x) => x.healthy).length;
      return h("section", { class: "panel", "data-test": "pool", "data-pool": p.name },
        h("h2", {}, p.name, " ", badge(p.provider, "inactive")),
        h("dl", { class: "config" },
          h("dt", { text: "Labels" }), h("dd", { text: labelText(p.selector) }),
          h("dt", { text: "Hosts" }), h("dd", { text: `${p.hosts.length} (${healthy} healthy), kept between ${p.min} and ${p.max}` }),
          h("dt", { text: "Receivers" }), h("dd", {}, acting.length
            ? acting.flatMap((r, i) => [i ? ", " : "", h("a", { href: `#/receivers/${r.id}`, text: r.name })])
            : h("span", { class: "muted", text: "none yet" }))),
        p.error && h("div", { class: "alert", role: "alert", text: `The provider failed: ${p.error}` }),
        p.hosts.length === 0 ? h("p", { class: "muted", text: "No hosts." }) : h("div", { class: "table-wrap" }, h("table", { "data-test": "hosts" },
          h("thead", {}, h("tr", {}, ["Host", "Health", "Labels", "Created"].map((t) => h("th", { text: t })))),
          h("tbody", {}, p.hosts.map((x) => h("tr", { "data-test": "host-row", "data-host": x.name },
            h("td", { class: "name", text: x.name }),
            h("td", {}, badge(x.healthy ? "healthy" : "unhealthy", x.healthy ? "active" : "failed")),
            h("td", { class: "muted", text: labelText(x.labels) }),
            h("td", { class: "muted", text: new Date(x.created).toLocaleString() })))))));
    }));
  };
  show(h("div", { class: "head" }, h("h1", { text: "Host pools" })), body);
  await refresh();
  every(5000, refresh);
}
