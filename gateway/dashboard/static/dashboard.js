// consentgate dashboard: reads /api/stats with the session cookie and draws it.
// Every value from the API that came from a visitor (paths, referrers, UTM tags, event
// names) goes into the page through textContent only, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const COLORS = { visitors: "#4f46e5", pageviews: "#0ea5e9", previous: "#a5b4fc",
    accept_all: "#16a34a", custom: "#0ea5e9", reject_all: "#f97316", gpc: "#a855f7", withdraw: "#e11d48" };
  const PANELS = {
    pages: { title: "Top pages", tabs: [["page", "Pages"], ["entry_page", "Entry"], ["exit_page", "Exit"]] },
    sources: { title: "Sources", tabs: [["source", "Channels"], ["referrer_host", "Referrers"], ["utm_source", "UTM source"],
      ["utm_medium", "UTM medium"], ["utm_campaign", "Campaigns"]] },
    countries: { title: "Countries", tabs: [["country", "Countries"]] },
    devices: { title: "Devices", tabs: [["browser", "Browsers"], ["os", "OS"], ["device", "Devices"]] },
    events: { title: "Events", tabs: [["event", "Custom events"]] },
  };
  // Clicking a row filters by its value; entry/exit pages filter by page.
  const FILTER_OF = { page: "page", entry_page: "page", exit_page: "page", source: "source", referrer_host: "referrer_host",
    utm_source: "utm_source", utm_medium: "utm_medium", utm_campaign: "utm_campaign", country: "country",
    browser: "browser", os: "os", device: "device", event: "event" };
  const LABELS = { page: "Page", event: "Event", country: "Country", browser: "Browser", os: "OS", device: "Device",
    referrer_host: "Referrer", source: "Channel", utm_source: "UTM source", utm_medium: "UTM medium", utm_campaign: "Campaign" };

  const state = { site: "", range: "30d", from: "", to: "", compare: true, interval: "day", filters: {}, tabs: {},
    propEvent: "", propName: "" };
  const PROP = "prop.";  // a filter on a custom event property: prop.NAME=VALUE
  const MAX_PROP_NAME = 64;  // as collect stores property names
  const filterLabel = (k) => (k.startsWith(PROP) ? `Property ${k.slice(PROP.length)}` : LABELS[k]);
  const isFilter = (k) => Boolean(LABELS[k]) || (k.startsWith(PROP) && k.length > PROP.length && k.length <= PROP.length + MAX_PROP_NAME);
  const charts = {};
  let loadSeq = 0;

  // ---- dates -------------------------------------------------------------------------------
  const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  const addDays = (d, n) => { const x = new Date(d); x.setDate(x.getDate() + n); return x; };
  const timezones = {};  // site -> IANA zone, from /api/stats/sites
  function siteToday() {
    // "Today" is the site's calendar day (as the API counts it), not the viewer's.
    const [y, m, d] = new Intl.DateTimeFormat("en-CA", { timeZone: timezones[state.site] || undefined })
      .format(new Date()).split("-").map(Number);
    return new Date(y, m - 1, d);
  }
  function rangeDates() {
    const today = siteToday();
    switch (state.range) {
      case "today": return [iso(today), iso(today)];
      case "7d": return [iso(addDays(today, -6)), iso(today)];
      case "90d": return [iso(addDays(today, -89)), iso(today)];
      case "month": return [iso(new Date(today.getFullYear(), today.getMonth(), 1)), iso(today)];
      case "lastmonth": return [iso(new Date(today.getFullYear(), today.getMonth() - 1, 1)),
        iso(new Date(today.getFullYear(), today.getMonth(), 0))];
      case "custom": return [state.from, state.to];
      default: return [iso(addDays(today, -29)), iso(today)];
    }
  }
  const dayCount = (from, to) => Math.round((new Date(to) - new Date(from)) / 86400000) + 1;
  function previousRange(from, to) {
    const n = dayCount(from, to);
    const end = addDays(new Date(from + "T00:00:00"), -1);
    return [iso(addDays(end, -(n - 1))), iso(end)];
  }

  // ---- state in the address (shareable, back button works) --------------------------------
  function saveHash() {
    const p = new URLSearchParams();
    p.set("site", state.site); p.set("range", state.range);
    if (state.range === "custom") { p.set("from", state.from); p.set("to", state.to); }
    if (!state.compare) p.set("compare", "0");
    p.set("interval", state.interval);
    for (const [k, v] of Object.entries(state.filters)) p.set("f." + k, v);
    if (state.propName) p.set("prop", state.propName);
    if (state.propEvent) p.set("prop_event", state.propEvent);
    history.replaceState(null, "", "#" + p.toString());
  }
  function loadHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.site = p.get("site") || state.site;
    state.range = p.get("range") || state.range;
    state.from = p.get("from") || ""; state.to = p.get("to") || "";
    state.compare = p.get("compare") !== "0";
    state.interval = p.get("interval") || state.interval;
    state.filters = {};
    for (const [k, v] of p.entries()) if (k.startsWith("f.") && isFilter(k.slice(2))) state.filters[k.slice(2)] = v;
    state.propName = (p.get("prop") || "").slice(0, MAX_PROP_NAME);
    state.propEvent = p.get("prop_event") || "";
  }

  // ---- API ---------------------------------------------------------------------------------
  // The session ended (logged out elsewhere, expired, a shared link revoked): load this page's own address
  // again, /dashboard (its login form) or /share/... (the link's password form, or why it no longer opens).
  // Once: a dashboard load sends many requests, and each later assign() would abort the navigation before it.
  let leaving = false;
  function sessionEnded() {
    if (!leaving) { leaving = true; location.assign(location.pathname); }
    return new Error("the session ended");
  }
  async function api(path, params = {}) {
    const qs = new URLSearchParams(params).toString();
    const r = await fetch(`/api/stats/${path}${qs ? "?" + qs : ""}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) throw sessionEnded();
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || body.error || r.statusText);
    return body;
  }
  // Goal edits: JSON with the session cookie; the browser adds Origin, which the gateway checks.
  async function send(method, path, body) {
    const r = await fetch(`/api/stats/${path}`, { method, credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
    if (r.status === 401) throw sessionEnded();
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.detail || answer.error || r.statusText);
    return answer;
  }
  const site = () => encodeURIComponent(state.site);
  // Per site, whether this session may change it (false in a shared link's session): from /api/stats/sites.
  const writable = {};
  const canWrite = () => writable[state.site] === true;
  function params(extra = {}, withFilters = true) {
    const [from, to] = rangeDates();
    return { from, to, ...(withFilters ? state.filters : {}), ...extra };
  }

  // ---- formatting --------------------------------------------------------------------------
  const fmt = new Intl.NumberFormat();
  const duration = (s) => (s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`);
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };

  // ---- KPIs --------------------------------------------------------------------------------
  const KPIS = [["visitors", "Visitors", fmt.format], ["visits", "Visits", fmt.format], ["pageviews", "Pageviews", fmt.format],
    ["views_per_visit", "Views / visit", (v) => v.toFixed(2)], ["bounce_rate", "Bounce rate", (v) => `${v}%`],
    ["visit_duration", "Visit duration", duration]];
  function renderKpis(summary) {
    const box = $("kpis"); box.replaceChildren();
    for (const [key, label, show] of KPIS) {
      const card = el("div", "kpi");
      card.append(el("div", "kpi-label", label), el("div", "kpi-value", show(summary.current[key])));
      const change = summary.change[key];
      if (state.compare) {
        const lowerIsBetter = key === "bounce_rate";
        const cls = change === null || change === 0 ? "flat" : (change > 0) !== lowerIsBetter ? "up" : "down";
        const arrow = change === null ? "" : change > 0 ? "▲ " : change < 0 ? "▼ " : "";
        card.append(el("div", `kpi-change ${cls}`, change === null ? "new" : `${arrow}${Math.abs(change)}%`));
        card.title = `Previous period: ${show(summary.previous[key])}`;
      }
      box.append(card);
    }
  }

  // ---- charts ------------------------------------------------------------------------------
  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart($(id), config);
  }
  function bucketLabel(bucket) {
    if (state.interval === "hour") return bucket.slice(5).replace("T", " ");
    if (state.interval === "month") return bucket.slice(0, 7);
    return bucket.slice(5);
  }
  function renderTimeseries(current, previous) {
    const datasets = [
      { label: "Visitors", data: current.map((r) => r.visitors), borderColor: COLORS.visitors, backgroundColor: "rgba(79,70,229,.12)", fill: true, tension: 0.3, pointRadius: 0, borderWidth: 2 },
      { label: "Pageviews", data: current.map((r) => r.pageviews), borderColor: COLORS.pageviews, tension: 0.3, pointRadius: 0, borderWidth: 2 },
    ];
    if (previous) datasets.push({ label: "Visitors, previous period", data: previous.map((r) => r.visitors), borderColor: COLORS.previous, borderDash: [5, 4], tension: 0.3, pointRadius: 0, borderWidth: 1.5 });
    chart("timeseries", { type: "line", data: { labels: current.map((r) => bucketLabel(r.bucket)), datasets },
      options: { responsive: true, maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 10, autoSkip: true } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } } });
  }
  function renderConsent(c) {
    const methods = ["accept_all", "custom", "reject_all", "gpc", "withdraw"];
    const names = { accept_all: "Accept all", custom: "Custom", reject_all: "Reject all", gpc: "GPC", withdraw: "Withdrawn" };
    chart("consent-chart", { type: "bar",
      data: { labels: c.daily.map((d) => d.day.slice(5)), datasets: methods.map((m) => ({ label: names[m], data: c.daily.map((d) => d[m]), backgroundColor: COLORS[m], stack: "d" })) },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true, ticks: { maxTicksLimit: 8 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 10 } } } } });
    const unseen = c.visitors_without_analytics;
    $("consent-note").textContent = c.decisions || unseen
      ? `${fmt.format(unseen)} deciding visitors (${(100 - c.visible_share).toFixed(1)}%) refused analytics: they are not in these statistics.`
      : "No banner decisions in this range.";
    const rates = $("consent-rates"); rates.replaceChildren();
    for (const [cat, label] of [["analytics", "Analytics"], ["marketing", "Marketing"], ["preferences", "Preferences"]]) {
      const row = el("div", "rate");
      const bar = el("div", "rate-bar"); const fill = el("span"); fill.style.width = `${c.opt_in_rate[cat]}%`; bar.append(fill);
      row.append(el("span", "rate-label", label), bar, el("b", "", `${c.opt_in_rate[cat]}%`));
      rates.append(row);
    }
    rates.append(el("div", "muted small", `${fmt.format(c.decisions)} decisions, ${fmt.format(c.withdrawals)} withdrawals`));
  }

  // ---- breakdown panels --------------------------------------------------------------------
  function panelShell(card, name) {
    const spec = PANELS[name];
    card.replaceChildren();
    const head = el("div", "card-head"); head.append(el("h2", "", spec.title));
    if (spec.tabs.length > 1) {
      const tabs = el("div", "tabs");
      for (const [dim, label] of spec.tabs) {
        const b = el("button", dim === state.tabs[name] ? "tab active" : "tab", label);
        b.type = "button";
        b.addEventListener("click", () => { state.tabs[name] = dim; loadPanel(card, name); });
        tabs.append(b);
      }
      head.append(tabs);
    }
    card.append(head);
    const list = el("ol", "rows"); card.append(list);
    return list;
  }
  async function loadPanel(card, name) {
    const dim = state.tabs[name] || PANELS[name].tabs[0][0];
    state.tabs[name] = dim;
    const list = panelShell(card, name);
    list.append(el("li", "empty", "Loading…"));
    const seq = loadSeq;
    const data = await api(`${site()}/breakdown/${dim}`, params({ limit: 8 }));
    if (seq !== loadSeq) return;
    list.replaceChildren();
    const rows = data.results;
    if (dim === "event") fillEventPicker(rows.map((r) => r.value));
    if (!rows.length) { list.append(el("li", "empty", "No data in this range")); return; }
    const max = Math.max(...rows.map((r) => r.visitors));
    const counted = dim === "event" ? "events" : "pageviews";
    for (const r of rows) {
      const li = el("li", "row");
      const btn = el("button", "row-btn");
      btn.type = "button";
      btn.title = `Filter by ${LABELS[FILTER_OF[dim]]}: ${r.value || "(none)"}`;
      const bar = el("span", "row-bar"); bar.style.width = `${(100 * r.visitors) / max}%`;
      btn.append(bar, el("span", "row-value", r.value || (dim === "country" ? "Unknown" : "(none)")),
        el("span", "row-num", fmt.format(r.visitors)), el("span", "row-num muted", fmt.format(r[counted])));
      btn.addEventListener("click", () => { state.filters[FILTER_OF[dim]] = r.value; reload(); });
      li.append(btn); list.append(li);
    }
    const legend = el("li", "legend muted small"); legend.append(el("span", "", ""), el("span", "row-num", "visitors"), el("span", "row-num", counted));
    list.prepend(legend);
  }

  // ---- goals and funnels --------------------------------------------------------------------
  async function loadGoals() {
    const seq = loadSeq;
    const data = await api(`${site()}/conversions`, params());
    if (seq !== loadSeq) return;
    const list = $("goals"); list.replaceChildren();
    $("goal-currency").textContent = data.results.some((g) => g.revenue !== null) ? `revenue in ${data.currency}` : "";
    knownProps(data.results.flatMap((g) => [...Object.keys(g.props || {}), ...(g.revenue_property ? [g.revenue_property] : [])]));
    if (!data.results.length) {
      list.append(el("li", "empty", canWrite() ? "No goals yet: add one below or in the config" : "This site has no goals"));
      return;
    }
    const legend = el("li", "goal-row legend muted small");
    legend.append(el("span", "", ""), el("span", "row-num", "visitors"), el("span", "row-num", "rate"), el("span", "row-num", "revenue"), el("span"));
    list.append(legend);
    const money = new Intl.NumberFormat(undefined, { style: "currency", currency: data.currency });
    for (const g of data.results) {
      const li = el("li", "goal-row");
      const matches = Object.entries(g.props || {}).map(([k, v]) => ` where ${k} = ${v}`).join("");
      li.title = g.kind === "page" ? `Page ${g.page}`
        : `Event ${g.event}${matches}${g.revenue_property ? `, revenue from ${g.revenue_property}` : ""}`;
      li.append(el("span", "row-value", g.name), el("span", "row-num", fmt.format(g.conversions)),
        el("span", "row-num muted", `${g.conversion_rate}%`), el("span", "row-num", g.revenue === null ? "–" : money.format(g.revenue)));
      if (g.editable && canWrite()) {
        const del = el("button", "del", "✕"); del.type = "button"; del.title = `Delete the goal ${g.name}`;
        del.addEventListener("click", async () => {
          try { await send("DELETE", `${site()}/goals/${encodeURIComponent(g.id)}`); await loadGoals(); }
          catch (e) { goalError(e); }
        });
        li.append(del);
      } else li.append(el("span", "muted small", ""));
      list.append(li);
    }
  }
  function goalError(err) { const box = $("goal-error"); box.hidden = !err; box.textContent = err ? err.message : ""; }
  async function addGoal(e) {
    e.preventDefault();
    const kind = $("goal-kind").value, value = $("goal-value").value.trim();
    const body = { name: $("goal-name").value.trim(), [kind]: value };
    if (kind === "event") {
      const prop = $("goal-prop-name").value.trim(), revenue = $("goal-revenue").value.trim();
      if (prop) body.props = { [prop]: $("goal-prop-value").value };
      if (revenue) body.revenue_property = revenue;
    }
    try { await send("POST", `${site()}/goals`, body); $("goal-form").reset(); showGoalKind(); goalError(null); await loadGoals(); }
    catch (err) { goalError(err); }
  }

  async function loadFunnels() {
    const seq = loadSeq;
    const { funnels } = await api(`${site()}/funnels`);
    if (seq !== loadSeq) return;
    const picker = $("funnel");
    const wanted = picker.value;
    picker.replaceChildren();
    for (const f of funnels) { const o = el("option", "", f.name); o.value = f.id; picker.append(o); }
    picker.hidden = !funnels.length;
    const steps = $("funnel-steps"); steps.replaceChildren();
    if (!funnels.length) { steps.append(el("li", "empty", "No funnels: define one in the config or through the API")); chart("funnel-chart", { type: "bar", data: { labels: [], datasets: [] } }); return; }
    picker.value = funnels.some((f) => f.id === wanted) ? wanted : funnels[0].id;
    await loadFunnel();
  }
  async function loadFunnel() {
    const seq = loadSeq;
    const data = await api(`${site()}/funnels/${encodeURIComponent($("funnel").value)}`, params());
    if (seq !== loadSeq) return;
    const rows = data.results;
    chart("funnel-chart", { type: "bar",
      data: { labels: rows.map((s, i) => `${i + 1}. ${s.name}`), datasets: [{ label: "Visitors", data: rows.map((s) => s.visitors), backgroundColor: COLORS.visitors }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, indexAxis: "y",
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false } } } });
    const steps = $("funnel-steps"); steps.replaceChildren();
    rows.forEach((s, i) => {
      const li = el("li", "step-row small");
      li.append(el("span", "row-value", `${i + 1}. ${s.name}`), el("span", "row-num", `${s.conversion_rate}%`),
        el("span", "row-num muted", i ? `−${fmt.format(s.dropoff)} dropped` : `${fmt.format(s.visitors)} entered`));
      steps.append(li);
    });
  }

  function showGoalKind() {
    const page = $("goal-kind").value === "page";
    $("goal-value").placeholder = page ? "/pricing*" : "signup";
    $("goal-event-extras").hidden = page;  // only an event goal matches properties and carries revenue
  }

  // ---- custom event properties ----------------------------------------------------------------
  function knownProps(names) {
    // Property names the page knows of (goals' matches and revenue, the one picked): suggestions for the inputs.
    const list = $("prop-names");
    const have = new Set([...list.options].map((o) => o.value));
    for (const n of [...names, state.propName]) if (n && !have.has(n)) { const o = el("option"); o.value = n; list.append(o); have.add(n); }
  }
  function fillEventPicker(names) {
    const picker = $("prop-event");
    const wanted = state.propEvent;
    picker.replaceChildren(Object.assign(el("option", "", "Any event"), { value: "" }));
    for (const n of new Set([...names, wanted])) if (n) { const o = el("option", "", n); o.value = n; picker.append(o); }
    picker.value = wanted;
  }
  async function loadProps() {
    const seq = loadSeq;
    const list = $("props");
    const name = state.propName;
    if (!name) { list.replaceChildren(el("li", "empty", "Type a property name (as sent with ConsentGate.track) to see its values")); return; }
    knownProps([name]);
    list.replaceChildren(el("li", "empty", "Loading…"));
    const extra = { limit: 8, ...(state.propEvent ? { event: state.propEvent } : {}) };
    const data = await api(`${site()}/breakdown/${encodeURIComponent("prop:" + name)}`, params(extra));
    if (seq !== loadSeq || name !== state.propName) return;
    list.replaceChildren();
    const rows = data.results;
    if (!rows.length) { list.append(el("li", "empty", `No hit in this range carries the property ${name}`)); return; }
    const legend = el("li", "legend muted small");
    legend.append(el("span", "", ""), el("span", "row-num", "visitors"), el("span", "row-num", "events"));
    list.append(legend);
    const max = Math.max(...rows.map((r) => r.visitors));
    for (const r of rows) {
      const li = el("li", "row");
      const btn = el("button", "row-btn"); btn.type = "button";
      btn.title = `Filter by property ${name}: ${r.value}`;
      const bar = el("span", "row-bar"); bar.style.width = `${(100 * r.visitors) / max}%`;
      btn.append(bar, el("span", "row-value", r.value), el("span", "row-num", fmt.format(r.visitors)),
        el("span", "row-num muted", fmt.format(r.events)));
      btn.addEventListener("click", () => { state.filters[PROP + name] = r.value; reload(); });
      li.append(btn); list.append(li);
    }
  }

  function renderFilters() {
    const box = $("filters"); box.replaceChildren();
    for (const [k, v] of Object.entries(state.filters)) {
      const chip = el("button", "chip"); chip.type = "button";
      chip.title = "Remove this filter";
      chip.append(el("span", "chip-key", `${filterLabel(k)} is `), el("b", "", v || "(none)"), el("span", "chip-x", " ✕"));
      chip.addEventListener("click", () => { delete state.filters[k]; reload(); });
      box.append(chip);
    }
  }

  function showError(err) {
    const box = $("error");
    box.hidden = !err;
    box.textContent = err ? `Could not load statistics: ${err.message}` : "";
  }

  async function loadRealtime() {
    if (!state.site || document.hidden) return;
    try { const rt = await api(`${site()}/realtime`); $("realtime-count").textContent = fmt.format(rt.visitors); }
    catch (e) { /* the next poll tries again */ }
  }

  async function reload() {
    loadSeq += 1;
    const seq = loadSeq;
    saveHash(); renderFilters(); showError(null);
    $("goal-form").hidden = !canWrite();
    const [from, to] = rangeDates();
    if (state.interval === "hour" && dayCount(from, to) > 31) { state.interval = "day"; $("interval").value = "day"; saveHash(); }
    document.body.classList.add("loading");
    try {
      const [prevFrom, prevTo] = previousRange(from, to);
      const [summary, series, previous, consent] = await Promise.all([
        api(`${site()}/summary`, params()),
        api(`${site()}/timeseries`, params({ interval: state.interval })),
        state.compare ? api(`${site()}/timeseries`, { ...state.filters, from: prevFrom, to: prevTo, interval: state.interval }) : null,
        api(`${site()}/consent`, params({}, false)),
        ...Object.keys(PANELS).map((name) => loadPanel(document.querySelector(`[data-panel="${name}"]`), name)),
        loadGoals(), loadFunnels(), loadProps(),
        loadRealtime(),
      ]);
      if (seq !== loadSeq) return;
      renderKpis(summary);
      renderTimeseries(series.results, previous && previous.results);
      renderConsent(consent);
    } catch (e) {
      if (seq === loadSeq) showError(e);
    } finally {
      if (seq === loadSeq) document.body.classList.remove("loading");
    }
  }

  async function start() {
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#64748b";
    loadHash();
    const { sites } = await api("sites");
    const picker = $("site");
    for (const s of sites) {
      const o = el("option", "", s.name); o.value = s.name; picker.append(o);
      timezones[s.name] = s.timezone; writable[s.name] = s.can_write === true;
    }
    if (!sites.some((s) => s.name === state.site)) state.site = sites.length ? sites[0].name : "";
    picker.value = state.site; $("range").value = state.range; $("compare").checked = state.compare; $("interval").value = state.interval;
    const [from, to] = rangeDates(); $("from").value = from; $("to").value = to;
    $("custom").hidden = state.range !== "custom";
    picker.addEventListener("change", () => { state.site = picker.value; state.filters = {}; state.propEvent = ""; reload(); });
    $("range").addEventListener("change", (e) => {
      state.range = e.target.value;
      $("custom").hidden = state.range !== "custom";
      if (state.range === "custom") { [state.from, state.to] = [$("from").value, $("to").value]; return; }
      if (dayCount(...rangeDates()) <= 2) { state.interval = "hour"; $("interval").value = "hour"; }
      else if (state.interval === "hour") { state.interval = "day"; $("interval").value = "day"; }
      reload();
    });
    $("apply").addEventListener("click", () => {
      if (!$("from").value || !$("to").value || $("from").value > $("to").value) { showError(new Error("pick a start date on or before the end date")); return; }
      state.from = $("from").value; state.to = $("to").value; reload();
    });
    $("compare").addEventListener("change", (e) => { state.compare = e.target.checked; reload(); });
    $("interval").addEventListener("change", (e) => { state.interval = e.target.value; reload(); });
    $("goal-form").addEventListener("submit", addGoal);
    $("goal-kind").addEventListener("change", showGoalKind);
    $("prop-name").value = state.propName;
    $("prop-name").addEventListener("change", (e) => { state.propName = e.target.value.trim(); saveHash(); loadProps().catch(showError); });
    $("prop-event").addEventListener("change", (e) => { state.propEvent = e.target.value; saveHash(); loadProps().catch(showError); });
    $("funnel").addEventListener("change", () => { loadFunnel().catch(showError); });
    setInterval(loadRealtime, 15000);
    if (state.site) await reload(); else showError(new Error("this gateway has no sites configured"));
  }

  document.addEventListener("DOMContentLoaded", () => { start().catch(showError); });
})();
