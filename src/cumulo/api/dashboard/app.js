// cumulo's dashboard: services, both slots' deployments, instances with their statuses, the
// service's events; swap, scale and instance reboot/reimage. Plain DOM (no framework, no build):
// every value from the API is set with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "cumulo-token";
const REFRESH_MS = 2000;
const state = { service: null, events: [], lastSeq: 0, timer: null, autoscale: {} };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function say(text, isError = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "muted";
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) throw new Unauthorized("The API token was refused.");
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

function statusClass(status) {
  if (status === "ReadyRole" || status === "Running") return "status ready";
  if (/Busy|Starting|Restarting|Transitioning|Stopping|Unknown|Creating/.test(status)) {
    return "status busy";
  }
  return "status bad";
}

// -- sign in / out --------------------------------------------------------------------------

function showSignIn(error = "") {
  clearInterval(state.timer);
  document.getElementById("main").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = error;
}

async function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
    hash.delete("token");
    history.replaceState(null, "", location.pathname + (hash.toString() ? `#${hash}` : ""));
  }
  state.service = new URLSearchParams(location.hash.slice(1)).get("service");
  if (!token()) return showSignIn();
  try {
    await refresh();
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(err.message);
  }
  document.getElementById("sign-in").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("sign-out").hidden = false;
  state.timer = setInterval(() => refresh().catch(onError), REFRESH_MS);
}

function onError(err) {
  if (err instanceof Unauthorized) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(err.message);
  } else {
    say(err.message, true);
  }
}

// -- rendering ------------------------------------------------------------------------------

async function refresh() {
  const [health, list] = await Promise.all([api("/v1/health"), api("/v1/services")]);
  document.getElementById("platform").textContent = `platform ${health.version}`;
  renderServices(list.services);
  if (!state.service && list.services.length) state.service = list.services[0].name;
  const panel = document.getElementById("service");
  if (!state.service) {
    panel.replaceChildren(el("p", { class: "muted", text: "No services yet: cumulo deploy NAME DIR." }));
    return;
  }
  if (panel.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
    return; // do not redraw under someone typing a count
  }
  const [service, events, autoscale] = await Promise.all([
    api(`/v1/services/${encodeURIComponent(state.service)}`),
    api(`/v1/services/${encodeURIComponent(state.service)}/events?after=${state.lastSeq}`),
    api(`/v1/services/${encodeURIComponent(state.service)}/autoscale`),
  ]);
  state.autoscale = Object.fromEntries(autoscale.settings.map((a) => [`${a.slot}/${a.role}`, a]));
  for (const event of events.events) {
    state.events.push(event);
    state.lastSeq = Math.max(state.lastSeq, event.seq);
  }
  state.events = state.events.slice(-20);
  renderService(service);
}

function renderServices(services) {
  const list = document.getElementById("services");
  list.replaceChildren(...services.map((s) => {
    const link = el("a", { href: `#service=${encodeURIComponent(s.name)}`, text: s.name });
    if (s.name === state.service) link.setAttribute("aria-current", "page");
    link.addEventListener("click", () => {
      if (s.name !== state.service) {
        state.service = s.name;
        state.events = [];
        state.lastSeq = 0;
      }
      refresh().catch(onError);
    });
    return el("li", {}, link);
  }));
}

function renderService(service) {
  const slots = Object.fromEntries(service.deployments.map((d) => [d.slot, d]));
  const swap = el("button", {
    type: "button", id: "swap", text: "Swap staging and production",
    onclick: () => act("swap", `/v1/services/${encodeURIComponent(service.name)}/swap`, {}),
  });
  swap.disabled = !(slots.production && slots.staging);
  const panel = document.getElementById("service");
  panel.replaceChildren(
    el("h2", { text: service.label && service.label !== service.name ? `${service.name} — ${service.label}` : service.name }),
    el("div", { class: "actions" }, swap),
    ...["production", "staging"].map((slot) => renderSlot(service.name, slot, slots[slot])),
    renderEvents(),
  );
}

function renderSlot(name, slot, dep) {
  const box = el("section", { class: "slot", "data-slot": slot });
  if (!dep) {
    box.append(el("h3", { text: slot }), el("p", { class: "muted", text: "No deployment." }));
    return box;
  }
  box.append(el("h3", {}, el("span", { text: slot }), el("span", { class: statusClass(dep.status), text: dep.status })));
  const meta = el("div", { class: "meta" });
  for (const [endpoint, address] of Object.entries(dep.vips)) {
    meta.append(`${endpoint}: `, el("a", { href: `http://${address}/`, text: address, target: "_blank", rel: "noopener" }), "  ");
  }
  if (dep.upgrade) {
    const u = dep.upgrade;
    meta.append(`${u.type} (${u.mode}): update domain ${u.current_domain + 1} of ${u.domain_count}, ${u.current_domain_state}`);
  }
  box.append(meta);
  const base = `/v1/services/${encodeURIComponent(name)}/deploymentslots/${slot}`;
  const roles = el("div", { class: "roles" });
  for (const role of dep.roles) {
    const input = el("input", { type: "number", min: "0", max: "50", value: String(role.instance_count), "aria-label": `${role.name} instances` });
    const form = el("form", {}, el("strong", { text: role.name }), input, el("button", { type: "submit", text: "Scale" }));
    const auto = (state.autoscale || {})[`${slot}/${role.name}`];
    if (auto) {
      const capacity = auto.setting.capacity || {};
      const last = auto.status && auto.status.decision ? ` — ${auto.status.decision}` : "";
      form.append(el("span", { class: "muted autoscale", text: `autoscale ${capacity.minimum}–${capacity.maximum}${last}` }));
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(`scale ${role.name}`, `${base}/scale`, { role: role.name, count: Number(input.value) });
    });
    roles.append(form);
  }
  box.append(roles);
  const rows = dep.instances.map((i) => el("tr", { "data-instance": i.id },
    el("td", { text: i.id }),
    el("td", { class: statusClass(i.status), text: i.status, title: i.detail || "" }),
    el("td", { text: String(i.update_domain) }),
    el("td", { text: i.fault_domain === null ? "" : String(i.fault_domain) }),
    el("td", { text: i.host || "" }),
    el("td", { text: i.in_rotation === null || i.in_rotation === undefined ? "—" : (i.in_rotation ? "in" : "out") }),
    el("td", { class: "num", text: i.cpu_percent === null || i.cpu_percent === undefined ? "—" : `${Math.round(i.cpu_percent)}%` }),
    el("td", { class: "num", text: i.memory_mb === null || i.memory_mb === undefined ? "—" : `${Math.round(i.memory_mb)} MB` }),
    el("td", { class: "num", text: String(i.restarts || 0) }),
    el("td", {},
      el("button", { type: "button", text: "Reboot", onclick: () => act(`reboot ${i.id}`, `${base}/roleinstances/${encodeURIComponent(i.id)}/reboot`, undefined) }),
      " ",
      el("button", { type: "button", text: "Reimage", onclick: () => act(`reimage ${i.id}`, `${base}/roleinstances/${encodeURIComponent(i.id)}/reimage`, undefined) }),
    ),
  ));
  box.append(el("table", {},
    el("thead", {}, el("tr", {}, ...["Instance", "Status", "UD", "FD", "Host", "LB", "CPU", "Memory", "Restarts", ""].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows),
  ));
  return box;
}

function renderEvents() {
  const list = el("ul", { id: "events" });
  for (const e of [...state.events].reverse()) {
    const when = new Date(e.time * 1000).toLocaleTimeString();
    const detail = Object.entries(e.fields || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
    list.append(el("li", { text: `${when} ${e.slot || ""} ${e.name} ${detail}` }));
  }
  return el("section", { class: "events" }, el("h2", { text: "Events" }), list);
}

async function act(what, path, body) {
  try {
    const op = await api(path, { method: "POST", body: body === undefined ? {} : body });
    say(`${what}: ${op.status || "accepted"}${op.id ? ` (operation ${op.id})` : ""}`);
    await refresh();
  } catch (err) {
    onError(err);
  }
}

document.getElementById("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  start();
});
document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn();
});
window.addEventListener("hashchange", () => {
  const wanted = new URLSearchParams(location.hash.slice(1)).get("service");
  if (wanted && wanted !== state.service) {
    state.service = wanted;
    state.events = [];
    state.lastSeq = 0;
  }
});
start();
