// hookd web UI: the seeds' "API → Webhooks" flow. No framework and no build step.
// Every piece of data reaches the page through textContent, never innerHTML.
"use strict";

const session = { csrf: null, role: null };
let timers = [];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(body, status) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code;
    this.field = body.field;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = session.csrf || "";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401 && !path.startsWith("/ui/session")) {
    session.csrf = null;
    location.hash = "#/signin";
    throw new ApiError({ message: "Please sign in." }, 401);
  }
  const text = await response.text();
  const data = text ? (response.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text : null;
  if (!response.ok) throw new ApiError(data || {}, response.status);
  return data;
}

const KINDS = { scaleService: "Scale a Service", scaleHost: "Scale Hosts" };
// Drivers the API has that this form cannot edit yet: shown, not offered.
const SHOWN_KINDS = { ...KINDS, serviceUpgrade: "Upgrade Services" };

function main() {
  return document.getElementById("main");
}

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
  // A new page: move focus to its heading, as a page load would, unless a field took it.
  const heading = m.querySelector("h1");
  if (heading && !m.contains(document.activeElement)) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

function every(ms, fn) {
  timers.push(setInterval(fn, ms));
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}`, text });
}

function copyField(url, label) {
  const input = h("input", { type: "text", readonly: true, value: url, "aria-label": label || "Trigger URL", "data-test": "trigger-url" });
  input.addEventListener("focus", () => input.select());
  const button = h("button", { type: "button", class: "btn secondary small", text: "Copy", "data-test": "copy" });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url);
    } catch {
      input.select();
      document.execCommand("copy");
    }
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return h("div", { class: "url" }, input, button);
}

function errorBox(err) {
  return h("div", { class: "alert", role: "alert", "data-test": "error", text: err.message });
}

async function act(receiver, action, confirmText) {
  if (confirmText && !confirm(confirmText)) return;
  try {
    if (action === "delete") {
      await api("DELETE", `/v1-webhooks/receivers/${receiver.id}`);
      location.hash = "#/receivers";
    } else {
      await api("POST", `/v1-webhooks/receivers/${receiver.id}?action=${action}`);
    }
    route();
  } catch (err) {
    main().prepend(errorBox(err));
  }
}

function optionsMenu(r) {
  const item = (text, onclick, cls) => h("button", { type: "button", class: cls, text, onclick, role: "menuitem", tabindex: "-1", "data-test": `menu-${text.toLowerCase().replace(/\W+/g, "-")}` });
  const readOnly = session.role === "read-only";
  const menu = h("details", { class: "menu" },
    h("summary", { "aria-label": `Options for ${r.name}`, "aria-haspopup": "menu", "aria-expanded": "false", text: "⋯" }),
    h("div", { class: "items", role: "menu" },
      item("View", () => (location.hash = `#/receivers/${r.id}`)),
      !readOnly && item("Clone", () => (location.hash = `#/receivers/new?clone=${r.id}`)),
      !readOnly && item("Edit", () => (location.hash = `#/receivers/${r.id}/edit`)),
      !readOnly && item(r.enabled ? "Disable" : "Enable", () => act(r, r.enabled ? "disable" : "enable")),
      !readOnly && item("Regenerate URL", () => act(r, "regenerateUrl", `Regenerate the trigger URL of "${r.name}"? The old URL stops working at once.`)),
      !readOnly && item("Delete", () => act(r, "delete", `Delete "${r.name}"? Its trigger URL stops working at once.`), "danger"),
    ));
  menu.addEventListener("toggle", () => placeMenu(menu));
  menuKeys(menu);
  return menu;
}

// The menu button pattern (WAI-ARIA APG): opening focuses an item; arrows, Home and End move
// among the items; Escape closes and returns to the button; Tab closes and moves on.
function menuKeys(menu) {
  const summary = menu.querySelector("summary");
  const items = () => [...menu.querySelectorAll("[role=menuitem]")];
  let focusLast = false;
  menu.addEventListener("toggle", () => {
    summary.setAttribute("aria-expanded", String(menu.open));
    if (menu.open) items().at(focusLast ? -1 : 0).focus();
    focusLast = false;
  });
  menu.addEventListener("keydown", (event) => {
    const all = items(), at = all.indexOf(document.activeElement);
    const go = (index) => { event.preventDefault(); all[(index + all.length) % all.length].focus(); };
    if (!menu.open) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        focusLast = event.key === "ArrowUp";
        menu.open = true;
      }
      return;
    }
    switch (event.key) {
      case "ArrowDown": return go(at + 1);
      case "ArrowUp": return go(at - 1);
      case "Home": return go(0);
      case "End": return go(-1);
      case "Escape":
        event.preventDefault();
        menu.open = false;
        summary.focus();
        return;
      case "Tab":
        menu.open = false;
        return;
    }
  });
}

// A fixed menu would float away from its row: close it on scroll and resize.
for (const event of ["scroll", "resize"]) {
  window.addEventListener(event, () => document.querySelectorAll("details.menu[open]").forEach((m) => m.removeAttribute("open")), { passive: true });
}

// Opens a row menu below its button (or above it, near the bottom), inside the viewport.
function placeMenu(menu) {
  if (!menu.open) return;
  document.querySelectorAll("details.menu[open]").forEach((other) => other !== menu && other.removeAttribute("open"));
  const items = menu.querySelector(".items");
  const button = menu.querySelector("summary").getBoundingClientRect();
  const height = items.offsetHeight, width = items.offsetWidth;
  const below = button.bottom + 4 + height <= window.innerHeight;
  items.style.top = `${Math.max(4, below ? button.bottom + 4 : button.top - 4 - height)}px`;
  items.style.left = `${Math.max(4, Math.min(button.right - width, window.innerWidth - width - 4))}px`;
}

async function receiversPage() {
  const page = await api("GET", "/v1-webhooks/receivers?limit=1000");
  const add = session.role !== "read-only" && h("a", { class: "btn", href: "#/receivers/new", "data-test": "add-receiver", text: "Add Receiver" });
  const head = h("div", { class: "head" }, h("h1", { text: "Receiver Hooks" }), add);
  if (page.data.length === 0) {
    show(head, h("section", { class: "panel empty", "data-test": "empty" },
      h("h2", { text: "No receiver hooks yet" }),
      h("p", { class: "muted", text: "A receiver hook is a URL that runs an action when something POSTs to it: scale a service up or down when Prometheus fires an alert through Alertmanager, or when CI or a person with curl asks." }),
      add));
    return;
  }
  const rows = page.data.map((r) => h("tr", { "data-test": "receiver-row", "data-name": r.name },
    h("td", {}, badge(r.state)),
    h("td", { class: "name", title: r.name }, h("a", { href: `#/receivers/${r.id}`, text: r.name })),
    h("td", { class: "hide-sm", text: SHOWN_KINDS[r.driver] || r.driver }),
    h("td", { class: "detail", text: r.description }),
    h("td", { class: "url-cell" }, r.url ? copyField(r.url, `Trigger URL of ${r.name}`) : h("span", { class: "muted", text: "hidden (read-only)" })),
    h("td", { class: "menu-cell" }, optionsMenu(r))));
  show(head, h("section", { class: "panel" }, h("div", { class: "table-wrap" }, h("table", { class: "cards" },
    h("thead", {}, h("tr", {}, ["State", "Name", "Kind", "Detail", "Trigger URL", ""].map((t, i) => h("th", { class: i === 2 ? "hide-sm" : null, text: t })))),
    h("tbody", {}, rows)))));
}

function field(name, label, input, hint) {
  // The error (and hint) are the input's description, so screen readers read them with it.
  input.setAttribute("aria-describedby", `err-${name}${hint ? ` hint-${name}` : ""}`);
  return h("div", { class: "field", "data-field": name },
    h("label", { for: `f-${name}`, text: label }), input,
    hint && h("span", { class: "hint", id: `hint-${name}`, text: hint }),
    h("span", { class: "error", id: `err-${name}`, "data-error-for": name, "aria-live": "polite" }));
}

function numberInput(name, value, min, placeholder) {
  return h("input", { type: "number", id: `f-${name}`, name, value: value ?? "", min: min ?? 0, step: 1, inputmode: "numeric", placeholder: placeholder ?? "" });
}

function cooldownText(seconds, alertDefault) {
  return seconds == null ? `${alertDefault} s for alerts, none for plain POSTs` : `${seconds} s`;
}

function formValue(form, n) {
  return form.elements[n].value;
}

function formInt(form, n) {
  return formValue(form, n) === "" ? undefined : Number(formValue(form, n));
}

// What every receiver form has: name, kind, action, the safety options, the buttons.
function formBase(source, id, cloneId, driver, c) {
  const editing = Boolean(id);
  const name = h("input", { type: "text", id: "f-name", name: "name", required: true, maxlength: 128, placeholder: "e.g. scale-web", value: editing ? source.name : cloneId ? `${source.name}-copy` : "" });
  // Another kind is another form: a new receiver of that kind.
  const kind = h("select", { id: "f-driver", name: "driver", disabled: editing, onchange: () => (location.hash = `#/receivers/new?kind=${kind.value}`) },
    Object.entries(KINDS).map(([value, text]) => h("option", { value, text, selected: driver === value })));
  const radio = (value, text) => h("label", {}, h("input", { type: "radio", name: "action", value, checked: c.action === value }), ` ${text}`);
  const action = h("div", { class: "field", "data-field": "action" },
    h("fieldset", {}, h("legend", { text: "Action" }), radio("up", "Scale Up"), radio("down", "Scale Down")),
    h("span", { class: "error", "data-error-for": "action" }));
  const onResolved = h("select", { id: "f-onResolved", name: "onResolved" },
    h("option", { value: "ignore", text: "Ignore (recommended)", selected: c.onResolved === "ignore" }),
    h("option", { value: "reverse", text: "Reverse one step", selected: c.onResolved === "reverse" }));
  const safety = [
    field("cooldownUpSeconds", "Cooldown up (s)", numberInput("cooldownUpSeconds", c.cooldownUpSeconds, 0, "alerts 0, POSTs none"), "Wait after the last change; empty: only alerts wait"),
    field("cooldownDownSeconds", "Cooldown down (s)", numberInput("cooldownDownSeconds", c.cooldownDownSeconds, 0, "alerts 300, POSTs none")),
    field("onResolved", "On resolved alerts", onResolved),
    field("dedupSeconds", "Duplicate window (s)", numberInput("dedupSeconds", c.dedupSeconds), "A notification already acted on within it is skipped"),
  ];
  const buttons = h("div", { class: "actions field wide" },
    h("button", { type: "submit", class: "btn", "data-test": "save", text: editing ? "Save" : "Create" }),
    h("a", { class: "btn secondary", href: editing ? `#/receivers/${id}` : "#/receivers", text: "Cancel" }));
  const title = editing ? `Edit ${source.name}` : cloneId ? `Clone ${source.name}` : "Add Receiver";
  const sender = senderFields(source, editing);
  return { editing, name, kind, action, safety, sender, buttons, title };
}

function safetyValues(form) {
  return {
    action: form.querySelector("input[name=action]:checked")?.value,
    cooldownUpSeconds: formInt(form, "cooldownUpSeconds"), cooldownDownSeconds: formInt(form, "cooldownDownSeconds"),
    dedupSeconds: formInt(form, "dedupSeconds"), onResolved: formValue(form, "onResolved"),
  };
}

// Shows the form; on submit saves what `config()` builds, and puts an error at its field.
function showForm(base, id, form, configKey, config) {
  const alertSlot = h("div", {});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    alertSlot.replaceChildren();
    form.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    form.querySelectorAll("[data-error-for]").forEach((e) => (e.textContent = ""));
    try {
      const body = { name: formValue(form, "name"), driver: base.kind.value, [configKey]: config(), senderVerification: base.sender.value() };
      const saved = base.editing
        ? await api("PUT", `/v1-webhooks/receivers/${id}`, body)
        : await api("POST", "/v1-webhooks/receivers", body);
      location.hash = `#/receivers/${saved.id}`;
    } catch (err) {
      const key = SENDER_FIELDS[err.field] || (err.field || "").replace(`${configKey}.`, "");
      const slot = key && form.querySelector(`[data-error-for="${key}"]`);
      if (slot) {
        slot.textContent = err.message;
        slot.closest(".field").classList.add("invalid");
        form.elements[key]?.setAttribute?.("aria-invalid", "true");
        form.elements[key]?.focus?.();
      } else {
        alertSlot.replaceChildren(errorBox(err));
      }
    }
  });
  show(h("div", { class: "head" }, h("h1", { text: base.title })), alertSlot, h("section", { class: "panel" }, form));
  base.name.focus();
}

async function formPage(id, cloneId, kindParam) {
  const source = id || cloneId ? await api("GET", `/v1-webhooks/receivers/${id || cloneId}`) : null;
  const driver = source?.driver || (KINDS[kindParam] ? kindParam : "scaleService");
  if (driver === "scaleHost") return hostFormPage(source, id, cloneId);
  const services = (await api("GET", "/v1-webhooks/services")).data;
  const c = source ? source.scaleServiceConfig : { action: "up", amount: 1, min: 1, max: 10, cooldownUpSeconds: null, cooldownDownSeconds: null, dedupSeconds: 600, onResolved: "ignore" };
  const base = formBase(source, id, cloneId, driver, c);
  const service = h("select", { id: "f-serviceId", name: "serviceId", required: true },
    h("option", { value: "", text: "Choose a service" }),
    services.map((s) => h("option", { value: s.id, selected: c.serviceId === s.id, text: `${s.name} (scale ${s.scale})` })));
  const allowAutoscaler = h("input", { type: "checkbox", id: "f-allowAutoscaler", name: "allowAutoscaler", checked: Boolean(c.allowAutoscaler) });
  const allowZero = h("input", { type: "checkbox", id: "f-allowZero", name: "allowZero", checked: Boolean(c.allowZero) });
  const mode = h("select", { id: "f-mode", name: "mode" },
    h("option", { value: "step", text: "Step: add or remove By per trigger", selected: c.mode !== "target" }),
    h("option", { value: "target", text: "Target: the count the alerts carry", selected: c.mode === "target" }));
  const [fromKind, fromName] = Object.entries(c.targetFrom || { label: "" })[0];
  const from = h("select", { id: "f-fromKind", name: "fromKind", "aria-label": "Label or annotation" },
    ["label", "annotation"].map((k) => h("option", { value: k, text: k, selected: fromKind === k })));
  const text = (name, value, placeholder) => h("input", { type: "text", id: `f-${name}`, name, value: value ?? "", placeholder });
  const targetOnly = [
    field("targetFrom", "Replica count from", text("targetFrom", fromName, "desired_replicas"), "The label (or annotation) of each firing alert that carries the count"),
    field("fromKind", "Carried in the alert's", from),
    field("maxStepUp", "Most added at once", text("maxStepUp", c.maxStepUp, "no limit; 4 or 50%")),
    field("maxStepDown", "Most removed at once", text("maxStepDown", c.maxStepDown, "no limit; 4 or 50%")),
    field("stabilizationSeconds", "Stabilization (s)", numberInput("stabilizationSeconds", c.stabilizationSeconds ?? 300), "A scale-down goes no lower than the highest count of this window"),
  ];
  const stepOnly = [base.action, field("amount", "By", numberInput("amount", c.amount, 1), "Containers added or removed per trigger")];
  const sync = () => {
    targetOnly.forEach((f) => (f.hidden = mode.value !== "target"));
    stepOnly.forEach((f) => (f.hidden = mode.value === "target"));
  };
  mode.addEventListener("change", sync);
  sync();
  base.safety[2].querySelector("select").append(h("option", { value: "min", text: "Go to min (target mode)", selected: c.onResolved === "min" }));
  const form = h("form", { class: "grid", novalidate: true, "data-test": "receiver-form" },
    field("name", "Name", base.name),
    field("driver", "Kind", base.kind),
    field("mode", "Mode", mode),
    field("serviceId", "Target Service", service),
    stepOnly, targetOnly,
    field("min", "Minimum Scale", numberInput("min", c.min, 0)),
    field("max", "Maximum Scale", numberInput("max", c.max, 2)),
    base.safety,
    field("allowZero", "Scale to zero", allowZero, "Allow minimum 0: the next alert wakes the service"),
    field("allowAutoscaler", "Alongside an autoscaler", allowAutoscaler, "Scale even though an autoscaler (a Kubernetes HPA) scales this service too"),
    base.sender.fields,
    base.buttons);
  showForm(base, id, form, "scaleServiceConfig", () => {
    const target = mode.value === "target";
    const optional = (n) => (target && formValue(form, n) !== "" ? formValue(form, n) : undefined);
    return {
      serviceId: formValue(form, "serviceId") || undefined, amount: target ? undefined : formInt(form, "amount"), min: formInt(form, "min"),
      max: formInt(form, "max"), allowAutoscaler: allowAutoscaler.checked, allowZero: allowZero.checked, ...safetyValues(form),
      mode: mode.value, targetFrom: target ? { [from.value]: formValue(form, "targetFrom") } : undefined,
      maxStepUp: optional("maxStepUp"), maxStepDown: optional("maxStepDown"), stabilizationSeconds: target ? formInt(form, "stabilizationSeconds") : undefined,
    };
  });
}

function historyTable(executions) {
  if (executions.length === 0) return h("p", { class: "muted", "data-test": "no-history", text: "No triggers yet." });
  return h("div", { class: "table-wrap" }, h("table", { "data-test": "history" },
    h("thead", {}, h("tr", {}, ["Time", "Outcome", "Scale", "Reason", "Source"].map((t) => h("th", { text: t })))),
    h("tbody", {}, executions.map((e) => h("tr", { "data-test": "history-row" },
      h("td", { text: new Date(e.at).toLocaleString() }),
      h("td", {}, badge(e.outcome), e.dryRun ? h("span", { class: "muted", text: " dry run" }) : null),
      h("td", { text: e.from !== null && e.to !== null ? `${e.from} → ${e.to}` : e.job ? "job" : "–" }),
      h("td", { text: e.detail ? `${e.reason}: ${e.detail}` : e.reason }),
      h("td", { class: "muted", text: e.source }))))));
}

function jobsTable(jobs) {
  if (jobs.length === 0) return h("p", { class: "muted", "data-test": "no-jobs", text: "No upgrades yet." });
  return h("div", { class: "table-wrap" }, h("table", { "data-test": "jobs" },
    h("thead", {}, h("tr", {}, ["Started", "State", "Service", "Progress", "Image", "Error"].map((t) => h("th", { text: t })))),
    h("tbody", {}, jobs.flatMap((j) => j.services.map((s) => h("tr", { "data-test": "job-row", "data-job": j.id },
      h("td", { text: new Date(j.created).toLocaleString() }),
      h("td", {}, badge(s.state === "done" ? "succeeded" : s.state === "pending" ? j.state : s.state)),
      h("td", { class: "name", text: s.service }),
      h("td", { text: `${s.updated}/${s.total}` }),
      h("td", { class: "muted", text: `${s.from} → ${s.image}` }),
      h("td", { class: "muted", text: s.error || j.error || "" })))))));
}

function configRows(r) {
  const row = (term, text) => [h("dt", { text: term }), h("dd", { text })];
  const rows = [row("Kind", SHOWN_KINDS[r.driver] || r.driver)];
  if (r.driver === "serviceUpgrade") {
    const u = r.serviceUpgradeConfig;
    const labels = Object.entries(u.serviceSelector).map(([k, v]) => `${k}=${v}`).join(", ");
    rows.push(row("Services labelled", labels),
      row("Tag", `${u.tag || "any"} (${u.tagPolicy}${u.semverBound && u.tagPolicy === "semver" ? `, up to a ${u.semverBound} step` : ""})`),
      row("Repository", u.repository || "the one each service runs"),
      row("Rollout", `${u.batchSize} at a time, ${u.intervalMillis} s apart${u.startFirst ? ", new before old" : ""}`));
  } else if (r.driver === "scaleHost") {
    rows.push(...hostConfigRows(r.scaleHostConfig, row));
  } else {
    const c = r.scaleServiceConfig;
    const from = Object.entries(c.targetFrom || {}).map(([k, v]) => `${k} ${v}`).join("");
    rows.push(row("Service", c.serviceId),
      c.mode === "target"
        ? row("Action", `To the count in the alerts' ${from}, between ${c.min} and ${c.max}; at most ${c.maxStepUp ?? "any"} up and ${c.maxStepDown ?? "any"} down at once; scale-down held ${c.stabilizationSeconds} s`)
        : row("Action", `${c.action === "up" ? "Scale up" : "Scale down"} by ${c.amount}, between ${c.min} and ${c.max}`),
      c.mode === "target"
        ? row("Cooldowns", `up ${c.cooldownUpSeconds ?? 0} s, down ${c.cooldownDownSeconds ?? 0} s (the window holds scale-downs)`)
        : row("Cooldowns", `up ${cooldownText(c.cooldownUpSeconds, 0)}, down ${cooldownText(c.cooldownDownSeconds, 300)}`),
      row("On resolved", c.onResolved),
      c.mode !== "target" && row("Duplicate window", `${c.dedupSeconds} s`));
    if (c.allowAutoscaler) rows.push(row("Autoscaler", "scales it alongside an autoscaler"));
  }
  if (r.senderVerification) rows.push(row("Sender must prove", senderText(r.senderVerification)));
  return rows.flat();
}

async function receiverPage(id) {
  const r = await api("GET", `/v1-webhooks/receivers/${id}`);
  const upgrade = r.driver === "serviceUpgrade";
  const hosts = r.driver === "scaleHost";
  const readOnly = session.role === "read-only";
  const result = h("div", { "data-test": "trigger-result", "aria-live": "polite" });
  const fire = async (dry) => {
    const response = await fetch(r.url + (dry ? "&dryRun=1" : ""), { method: "POST" });
    const body = await response.json();
    result.replaceChildren(h("div", { class: "notice" },
      `${dry ? "Dry run: " : ""}${body.outcome}${body.from !== undefined && body.from !== null ? ` ${body.from} → ${body.to}` : ""}: ${body.message || body.reason || (body.jobUrl ? "a job runs it" : "")}`));
    refresh();
  };
  const history = h("div", {});
  const jobs = h("div", {});
  const refresh = async () => {
    const page = await api("GET", `/v1-webhooks/receivers/${id}/executions?limit=50`);
    history.replaceChildren(historyTable(page.data));
    if (upgrade || hosts) {
      const data = (await api("GET", `/v1-webhooks/receivers/${id}/jobs`)).data;
      jobs.replaceChildren(upgrade ? jobsTable(data) : hostJobsTable(data));
    }
  };
  const snippet = h("pre", { class: "snippet", "data-test": "snippet" });
  show(
    h("div", { class: "head" },
      h("h1", {}, r.name, " ", badge(r.state)),
      !readOnly && h("div", { class: "actions" },
        !upgrade && h("a", { class: "btn secondary", href: `#/receivers/${r.id}/edit`, text: "Edit" }),
        !upgrade && h("a", { class: "btn secondary", href: `#/receivers/new?clone=${r.id}`, text: "Clone" }),
        h("button", { type: "button", class: "btn secondary", text: r.enabled ? "Disable" : "Enable", onclick: () => act(r, r.enabled ? "disable" : "enable") }),
        h("button", { type: "button", class: "btn secondary", "data-test": "regenerate", text: "Regenerate URL", onclick: () => act(r, "regenerateUrl", `Regenerate the trigger URL of "${r.name}"? The old URL stops working at once.`) }),
        h("button", { type: "button", class: "btn danger", text: "Delete", onclick: () => act(r, "delete", `Delete "${r.name}"? Its trigger URL stops working at once.`) }))),
    h("section", { class: "panel" },
      h("h2", { text: r.description }),
      h("dl", { class: "config" }, configRows(r)),
      r.url && h("div", {},
        h("h2", { style: null, text: "Trigger URL" }),
        copyField(r.url),
        upgrade
          ? h("p", { class: "muted", text: "Give this URL to your registry's webhook settings: a push of a matching tag upgrades the services." })
          : r.senderVerification
          ? h("p", { class: "muted", "data-test": "needs-proof", text: "Triggers must carry the sender's proof, which this page cannot sign: test from the sender." })
          : h("div", { class: "actions", style: null },
            h("button", { type: "button", class: "btn", "data-test": "send-test", text: "Send test trigger", onclick: () => fire(false) }),
            h("button", { type: "button", class: "btn secondary", "data-test": "dry-run", text: "Dry run", onclick: () => fire(true) })),
        result)),
    (upgrade || hosts) && h("section", { class: "panel" }, h("h2", { text: upgrade ? "Upgrades" : "Host changes" }), jobs),
    h("section", { class: "panel" }, h("h2", { text: "Execution history" }), history),
    r.url && !upgrade && h("section", { class: "panel" }, h("h2", { text: "Alertmanager configuration" }),
      h("p", { class: "muted", text: "Paste this into alertmanager.yml. It contains the trigger URL: keep it secret." }), snippet));
  await refresh();
  every(2000, refresh);
  if (r.url && !upgrade) snippet.textContent = await api("GET", `/v1-webhooks/receivers/${id}/alertmanager-config`);
}

async function servicesPage() {
  const table = h("div", {});
  const refresh = async () => {
    const page = await api("GET", "/v1-webhooks/services");
    table.replaceChildren(h("div", { class: "table-wrap" }, h("table", { "data-test": "services" },
      h("thead", {}, h("tr", {}, ["Service", "Kind", "Scale", "Running", "Image", "Last error"].map((t) => h("th", { text: t })))),
      h("tbody", {}, page.data.map((s) => h("tr", { "data-test": "service-row", "data-service": s.id },
        h("td", { class: "name", title: s.name, text: s.name }),
        h("td", { text: s.serviceKind }),
        h("td", { "data-test": "scale", text: s.scale }),
        h("td", { "data-test": "running", text: s.running }),
        h("td", { class: "muted", text: s.image }),
        h("td", { class: "muted", text: s.lastError || "" })))))));
  };
  show(h("div", { class: "head" }, h("h1", { text: "Services" })), h("section", { class: "panel" }, table));
  await refresh();
  every(2000, refresh);
}

async function auditPage() {
  const page = await api("GET", "/v1-webhooks/audit?limit=200");
  const rows = page.data.map((e) => h("tr", { "data-test": "audit-row" },
    h("td", { class: "muted", text: e.at.replace("T", " ").replace(/\.\d+Z$/, "Z") }),
    h("td", { text: e.actor }),
    h("td", { class: "hide-sm", text: e.projectId || "(all)" }),
    h("td", { text: e.action }),
    h("td", { class: "detail", text: `${e.target} ${e.detail}`.trim() })));
  const body = page.data.length === 0
    ? h("p", { class: "muted", text: "Nothing has been changed yet." })
    : h("div", { class: "table-wrap" }, h("table", { "data-test": "audit" },
      h("thead", {}, h("tr", {}, ["When", "Who", "Project", "Action", "What"].map((t, i) => h("th", { class: i === 2 ? "hide-sm" : null, text: t })))),
      h("tbody", {}, rows)));
  show(h("div", { class: "head" }, h("h1", { text: "Audit log" })), h("section", { class: "panel" }, body));
}

// Who is signed in, and the links their role may use.
function showWho() {
  const scope = session.project ? `project ${session.project}` : "every project";
  document.getElementById("whoami").textContent = session.name ? `${session.name} · ${session.role} of ${scope}` : "";
  document.getElementById("nav-audit").hidden = session.role !== "owner";
}

function signInPage() {
  const token = h("input", { type: "password", id: "f-token", name: "token", autocomplete: "current-password", required: true });
  const alertSlot = h("div", {});
  const form = h("form", { "data-test": "sign-in" },
    field("token", "API token", token, "hookd prints the admin token at its first start."),
    h("button", { type: "submit", class: "btn", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const s = await api("POST", "/ui/session", { token: token.value });
      Object.assign(session, s);
      location.hash = "#/receivers";
    } catch (err) {
      alertSlot.replaceChildren(errorBox(err));
      token.focus();
    }
  });
  show(h("section", { class: "panel signin" }, h("h1", { text: "Sign in to hookd" }), alertSlot, form));
  token.focus();
}

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const [path, query] = (location.hash.slice(1) || "/receivers").split("?");
  const params = new URLSearchParams(query || "");
  if (!session.csrf && path !== "/signin") {
    try {
      Object.assign(session, await api("GET", "/ui/session"));
    } catch {
      location.hash = "#/signin";
      return;
    }
  }
  document.getElementById("nav").hidden = path === "/signin";
  showWho();
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", path.startsWith(`/${a.dataset.nav}`)));
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "signin") signInPage();
    else if (parts[0] === "services") await servicesPage();
    else if (parts[0] === "audit") await auditPage();
    else if (parts[0] === "pools") await poolsPage();
    else if (parts[0] === "receivers" && parts[1] === "new") await formPage(null, params.get("clone"), params.get("kind"));
    else if (parts[0] === "receivers" && parts[1] && parts[2] === "edit") await formPage(parts[1]);
    else if (parts[0] === "receivers" && parts[1]) await receiverPage(parts[1]);
    else await receiversPage();
  } catch (err) {
    if (err.status !== 401) show(errorBox(err), h("a", { href: "#/receivers", text: "Back to the receiver hooks" }));
  }
}

document.getElementById("sign-out").addEventListener("click", async () => {
  await fetch("/ui/session", { method: "DELETE" });
  session.csrf = null;
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
// After every deferred script (hosts.js too) has run.
document.addEventListener("DOMContentLoaded", route);
