// The Sacred admin dashboard: log in, poll this node's numbers every second,
// act on its clients. Everything shown is set with textContent or built with
// createElement: no server data ever goes through innerHTML.
"use strict";

const POLL_MS = 1000;
let csrf = null;
let presenceChannel = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function status(text, isError) {
  const line = $("status");
  line.textContent = text;
  line.className = isError ? "status error" : "status";
}

// A call to the admin API with the session cookie; state-changing ones
// carry the CSRF token.
async function call(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["x-sacred-csrf"] = csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    showLogin("The session ended: log in again.");
  }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function showLogin(message) {
  csrf = null;
  clearInterval(timer);
  timer = null;
  $("live-view").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("password").focus();
}

function showLive(session) {
  csrf = session.csrf;
  $("node").textContent = `Node ${session.node}: the numbers and lists are this node's only ` +
    "(each node of a cluster has its own dashboard); logged in as " + session.actor;
  $("login-view").hidden = true;
  $("live-view").hidden = false;
  $("logout").hidden = false;
  document.body.dataset.state = "live";
  poll();
  timer = setInterval(poll, POLL_MS);
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  let response;
  try {
    response = await fetch("/admin/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ password: $("password").value }),
    });
  } catch (err) {
    $("login-error").textContent = `cannot reach the server: ${err.message}`;
    return;
  } finally {
    $("password").value = "";
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("login-error").textContent = data.error || `HTTP ${response.status}`;
    return;
  }
  showLive(data);
}

async function logout() {
  try {
    await call("POST", "/admin/logout");
  } catch (_) {
    // Ended already: the login shows either way.
  }
  showLogin("Logged out.");
}

function drawChart(samples) {
  const width = 600;
  const height = 120;
  const peak = Math.max(1, ...samples.map((s) => Math.max(s.published, s.delivered)));
  const span = Math.max(60, samples.length);
  const points = (key) => samples
    .map((s, i) => {
      // The newest at the right edge, one step per second; at least a
      // minute wide, at most the five minutes kept.
      const x = width - (samples.length - 1 - i) * (width / (span - 1));
      const y = height - 4 - (s[key] / peak) * (height - 8);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
  $("line-in").setAttribute("points", points("published"));
  $("line-out").setAttribute("points", points("delivered"));
  $("peak").textContent = String(peak);
  $("span").textContent = span >= 300 ? "5 minutes" : `${span} s`;
}

function renderClients(clients) {
  const rows = clients.map((client) => {
    const row = el("tr");
    row.dataset.client = client.id;
    row.append(el("td", client.name), el("td", client.kind), el("td", client.runtime),
      el("td", client.user ?? "—"), el("td", client.id, "id"));
    const kick = el("button", "Disconnect");
    kick.type = "button";
    kick.addEventListener("click", () => act(`disconnected ${client.name}`,
      () => call("POST", "/admin/api/disconnect", { client: client.id })));
    const cell = el("td");
    cell.append(kick);
    row.append(cell);
    return row;
  });
  $("clients").replaceChildren(...rows);
}

function renderChannels(channels) {
  const rows = channels.map((entry) => {
    const row = el("tr");
    row.append(el("td", entry.channel), el("td", entry.subscribers));
    const show = el("button", "Presence");
    show.type = "button";
    show.addEventListener("click", () => {
      presenceChannel = entry.channel;
      $("broadcast-channel").value = entry.channel;
      poll();
    });
    const cell = el("td");
    cell.append(show);
    row.append(cell);
    return row;
  });
  $("channels").replaceChildren(...rows);
}

function renderPresence(peers) {
  $("presence-channel").textContent = presenceChannel ?? "(choose a channel)";
  $("presence").replaceChildren(...peers.map((peer) =>
    el("li", `${peer.name} (${peer.kind}, ${peer.runtime})${peer.user ? " user " + peer.user : ""} ${peer.id}`)));
}

let polling = false;
async function poll() {
  if (polling || csrf === null) return;
  polling = true;
  try {
    const [stats, clients, channels] = await Promise.all([
      call("GET", "/admin/api/stats"),
      call("GET", "/admin/api/connections"),
      call("GET", "/admin/api/channels"),
    ]);
    const last = stats.samples[stats.samples.length - 1] ?? { published: 0, delivered: 0 };
    $("connections").textContent = String(stats.connections);
    $("rate-in").textContent = String(last.published);
    $("rate-out").textContent = String(last.delivered);
    $("channel-count").textContent = String(stats.channels);
    drawChart(stats.samples);
    renderClients(clients);
    renderChannels(channels);
    if (presenceChannel !== null) {
      renderPresence(await call("GET", `/admin/api/presence?channel=${encodeURIComponent(presenceChannel)}`));
    }
  } catch (err) {
    if (csrf !== null) status(`Could not refresh: ${err.message}`, true);
  } finally {
    polling = false;
  }
}

// Runs an action and says how it went.
async function act(what, action) {
  try {
    const result = await action();
    status(`Done: ${what} ${JSON.stringify(result)}`, false);
  } catch (err) {
    status(`Failed: ${what}: ${err.message}`, true);
  }
  poll();
}

function onSubmit(id, handler) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  onSubmit("broadcast-form", () => {
    let data;
    try {
      data = JSON.parse($("broadcast-data").value);
    } catch (err) {
      status(`The data is not JSON: ${err.message}`, true);
      return;
    }
    const channel = $("broadcast-channel").value;
    act(`broadcast to ${channel}`, () => call("POST", "/admin/api/broadcast", { channel, data }));
  });
  onSubmit("delete-form", () => {
    const user = $("delete-user").value;
    if (!confirm(`Delete every stored publication of ${user} and close their connections?`)) return;
    act(`deleted ${user}'s data`, () => call("DELETE", `/admin/api/users/${encodeURIComponent(user)}`));
  });
  onSubmit("migrate-form", () => {
    const url = $("migrate-url").value.trim();
    const at_ms = Date.now() + Number($("migrate-secs").value) * 1000;
    act("migration announced", () => call("POST", "/admin/api/migrate", { url: url || null, at_ms }));
  });
  const response = await fetch("/admin/session", { credentials: "same-origin" });
  if (response.ok) showLive(await response.json());
  else showLogin("");
  document.body.dataset.ready = "yes";
});
