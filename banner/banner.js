/* consentgate banner, readable source. The gateway minifies it once per site at start and
   fills in CONSENTGATE_CSS (banner.css) and CONSENTGATE_CONFIG (the site's config and texts).
   No eval, no inline handlers, no style attributes: it runs under a strict CSP. */
(function (w, d, css, C) {
  "use strict";
  if (w.ConsentGate) return; // embedded twice: the first copy owns the page
  var CATEGORIES = ["preferences", "analytics", "marketing"];
  var script = d.currentScript;
  var api = script.src.replace(/\/banner\.js([?#].*)?$/, ""); // https://gateway/s/{site}
  var KEY = "consentgate:" + C.site;
  var gpc = navigator.globalPrivacyControl === true;
  var lang = pickLanguage();
  var T = C.texts[lang];
  var stored = readStored();
  // A decision counts only for the current policy version and until its token expires.
  var current = stored.policy_version === C.policy_version && Date.parse(stored.expires_at) > Date.now() ? stored.choices : null;
  var lastUrl = ""; // the last page view sent: one per URL, also across SPA route changes
  var root, banner, modal, reopen, mine, returnFocus;

  function pickLanguage() {
    var wanted = [d.documentElement.lang].concat(navigator.languages || [navigator.language]);
    for (var i = 0; i < wanted.length; i++) {
      var code = String(wanted[i] || "").slice(0, 2).toLowerCase();
      if (C.texts[code]) return code;
    }
    return C.languages[0];
  }

  function readStored() {
    try {
      return JSON.parse(localStorage.getItem(KEY)) || {};
    } catch (e) {
      return {};
    }
  }

  function esc(text) {
    return String(text).replace(/[&<>"]/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }

  // Google Consent Mode v2: everything denied before any tag, then the visitor's choice.
  function consentMode(kind, choices) {
    if (!C.consent_mode) return;
    var state = function (c) { return choices && choices[c] ? "granted" : "denied"; };
    w.dataLayer = w.dataLayer || [];
    w.gtag = w.gtag || function () { w.dataLayer.push(arguments); };
    w.gtag("consent", kind, {
      ad_storage: state("marketing"), ad_user_data: state("marketing"), ad_personalization: state("marketing"),
      analytics_storage: state("analytics"), functionality_storage: state("preferences"),
      personalization_storage: state("preferences"), security_storage: "granted"
    });
  }

  // <script type="text/plain" data-category="analytics" [data-src="..."]> runs once its category is granted.
  function runGatedScripts() {
    d.querySelectorAll('script[type="text/plain"][data-category]').forEach(function (gated) {
      if (!current || !current[gated.getAttribute("data-category")]) return;
      var run = d.createElement("script");
      for (var i = 0, a; (a = gated.attributes[i]); i++) {
        if (a.name !== "type" && a.name !== "data-src") run.setAttribute(a.name, a.value);
      }
      run.nonce = gated.nonce; // the nonce attribute reads empty after parsing; the property keeps it
      if (gated.getAttribute("data-src")) {
        run.src = gated.getAttribute("data-src");
        run.async = false; // keep the page's order
      } else {
        run.text = gated.text;
      }
      gated.parentNode.replaceChild(run, gated);
    });
  }

  // Expires the configured cookies of a category on this host and each parent domain; "_ga*" matches a prefix.
  function clearCookies(category) {
    var host = location.hostname.split("."), domains = [""];
    for (var i = 0; i < host.length - 1; i++) domains.push(";domain=." + host.slice(i).join("."));
    (C.cookies[category] || []).forEach(function (pattern) {
      d.cookie.split(/; */).forEach(function (pair) {
        var name = pair.split("=")[0];
        var match = pattern.slice(-1) === "*" ? name.indexOf(pattern.slice(0, -1)) === 0 : name === pattern;
        if (match) domains.forEach(function (domain) { d.cookie = name + "=;max-age=0;path=/" + domain; });
      });
    });
  }

  function send(path, body) {
    var consent = path === "/consent"; // JSON needs a CORS preflight, which some browsers refuse with keepalive
    return fetch(api + path, {method: "POST", credentials: "include", keepalive: !consent, body: JSON.stringify(body),
      headers: {"Content-Type": consent ? "application/json" : "text/plain"}});
  }

  function hit(body) {
    if (!current || !(current.analytics || current.marketing) || !stored.token) return false;
    body.consent = stored.token; // in the body: browsers withhold the gateway's cookie on cross-site requests
    if (!(navigator.sendBeacon && navigator.sendBeacon(api + "/collect", JSON.stringify(body)))) {
      send("/collect", body).catch(function () {});
    }
    return true;
  }

  function pageview() {
    var url = location.href.split("#")[0];
    if (!current || !current.analytics || url === lastUrl) return;
    if (hit({type: "pageview", url: url, referrer: lastUrl || d.referrer})) lastUrl = url;
  }

  // A custom event with up to 30 string properties (the gateway refuses more, and drops values that look
  // like an e-mail address or an IP address): ConsentGate.track("signup", {plan: "pro"}).
  function track(name, props) {
    var p = {};
    for (var k in props || {}) if (Object.prototype.hasOwnProperty.call(props, k)) p[k] = String(props[k]);
    return hit({type: "event", name: String(name), url: location.href.split("#")[0], referrer: d.referrer, props: p});
  }

  function apply(choices) {
    current = choices;
    consentMode("update", choices);
    CATEGORIES.forEach(function (c) { if (!choices[c]) clearCookies(c); });
    runGatedScripts();
    pageview();
    w.dispatchEvent(new CustomEvent("consentgate:change", {detail: getConsent()}));
  }

  function decide(choices, method) {
    // Proof of what was shown and where: the hash of this language's banner, and the page without query or fragment.
    var body = {choices: choices, method: method, language: lang, banner_version: C.versions[lang],
      page: (location.origin + location.pathname).slice(0, 2048)};
    if (stored.token) body.consent = stored.token; // keeps the visitor's consent id across decisions
    hide();
    return send("/consent", body)
      .then(function (r) {
        if (!r.ok) throw new Error("consentgate: " + r.status);
        return r.json();
      })
      .then(function (saved) {
        remember(saved);
        apply(saved.choices);
      }, function () {
        // Unrecorded: honoured on this page, and no older decision stands in for it on the next one.
        remember({token: stored.token});
        apply(Object.assign({necessary: true}, choices));
      });
  }

  function remember(decision) {
    stored = decision;
    try { localStorage.setItem(KEY, JSON.stringify(decision)); } catch (e) { /* private mode: this page only */ }
  }

  function all(value) {
    var choices = {};
    CATEGORIES.forEach(function (c) { choices[c] = value && !(c === "marketing" && gpc); });
    return choices;
  }

  function category(c) {
    var lines = [T[c + "_desc"]];
    if ((C.cookies[c] || []).length) lines.push(T.cookies + ": " + C.cookies[c].join(", "));
    if ((C.vendors[c] || []).length) lines.push(T.vendors + ": " + C.vendors[c].join(", "));
    return '<div class="cg-cat"><label class="cg-row">' + esc(T[c]) +
      '<input type="checkbox" role="switch" class="cg-sw" id="cg-' + c + '" aria-describedby="cg-' + c + '-d"' +
      (c === "necessary" ? " checked disabled" : "") + '></label><p id="cg-' + c + '-d">' +
      lines.map(esc).join("<br>") + "</p></div>";
  }

  function buttons(actions, look) {
    return '<div class="cg-btns">' + actions.map(function (a) {
      return '<button type="button" class="' + (look || "cg-btn") + '" data-action="' + a[0] + '">' + esc(T[a[1]]) + "</button>";
    }).join("") + "</div>";
  }

  function build() {
    var style = d.createElement("style");
    if (script.nonce) style.nonce = script.nonce; // style-src 'nonce-...': put the page's nonce on the script tag
    style.textContent = css;
    d.head.appendChild(style);
    var vendors = [].concat.apply([], CATEGORIES.map(function (c) { return C.vendors[c] || []; }));
    root = d.createElement("div");
    root.className = "cg";
    root.lang = lang;
    root.innerHTML =
      '<div class="cg-banner" role="dialog" aria-labelledby="cg-title" aria-describedby="cg-intro" tabindex="-1" hidden>' +
      '<h2 id="cg-title">' + esc(T.title) + '</h2><p id="cg-intro">' +
      esc(T.intro.replace("{controller}", C.controller || location.hostname)) +
      (vendors.length ? " " + esc(T.vendors + ": " + vendors.join(", ") + ".") : "") +
      (C.policy_url ? ' <a href="' + esc(C.policy_url) + '">' + esc(T.policy) + "</a>" : "") + "</p>" +
      (gpc ? '<p class="cg-note">' + esc(T.gpc) + "</p>" : "") +
      buttons([["accept", "accept"], ["reject", "reject"], ["settings", "settings"]]) + "</div>" +
      '<div class="cg-modal" hidden><div class="cg-panel" role="dialog" aria-modal="true" aria-labelledby="cg-ptitle">' +
      '<h2 id="cg-ptitle">' + esc(T.prefs_title) + "</h2><p>" + esc(T.prefs_intro) + "</p>" +
      ["necessary"].concat(CATEGORIES).map(category).join("") +
      buttons([["reject", "reject_all"], ["save", "save"], ["accept", "accept_all"]]) + '<div class="cg-mine"></div></div></div>' +
      '<button type="button" class="cg-reopen cg-' + C.reopen_position + '" data-action="show" hidden>' + esc(T.reopen) + "</button>";
    d.body.appendChild(root);
    banner = root.firstChild;
    modal = banner.nextSibling;
    reopen = modal.nextSibling;
    mine = modal.querySelector(".cg-mine");
    root.addEventListener("click", onClick);
    d.addEventListener("keydown", onKey);
  }

  function onClick(e) {
    var action = e.target.getAttribute("data-action");
    if (action === "accept") decide(all(true), gpc ? "gpc" : "accept_all");
    else if (action === "reject") decide(all(false), "reject_all");
    else if (action === "settings") openSettings();
    else if (action === "show" || e.target === modal) show(); // a click beside the settings goes back
    else if (action === "mine") myData("open");
    else if (action === "erase") myData("confirm");
    else if (action === "export") myRequest("GET").then(function (r) { return r.blob(); }).then(function (blob) {
      var a = d.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "my-data-" + C.site + ".json";
      a.click();
      setTimeout(URL.revokeObjectURL, 60000, a.href);
    }).catch(myError);
    else if (action === "erase_yes") myRequest("DELETE").then(function () {
      // Erased and withdrawn at the gateway: forget the token, drop the cookies, ask again.
      remember({});
      apply(all(false));
      current = null;
      show();
    }, myError);
    else if (action === "save") {
      var choices = {};
      CATEGORIES.forEach(function (c) { choices[c] = modal.querySelector("#cg-" + c).checked; });
      decide(choices, "custom");
    }
  }

  function onKey(e) {
    if (e.key === "Escape") {
      if (!modal.hidden) {
        e.preventDefault();
        show(); // back to the first layer
      } else if (!banner.hidden) {
        e.preventDefault();
        hide(); // no decision: nothing runs, and the banner asks again on the next page
      }
    } else if (e.key === "Tab" && !modal.hidden) {
      // The preferences layer is modal: Tab and Shift+Tab cycle inside it.
      var focusable = modal.querySelectorAll("input:not([disabled]),button,a[href]");
      var first = focusable[0], last = focusable[focusable.length - 1];
      if (!modal.contains(d.activeElement) || d.activeElement === (e.shiftKey ? first : last)) {
        e.preventDefault();
        (e.shiftKey ? last : first).focus();
      }
    }
  }

  function show() {
    if (!root) return ready(show);
    if (banner.hidden && modal.hidden) returnFocus = d.activeElement;
    modal.hidden = reopen.hidden = true;
    banner.hidden = false;
    banner.focus();
  }

  function openSettings() {
    CATEGORIES.forEach(function (c) { modal.querySelector("#cg-" + c).checked = !!(current && current[c]); });
    banner.hidden = true;
    modal.hidden = false;
    modal.querySelector("input:not([disabled])").focus();
    myData("");
  }

  // "My data": the visitor's own export and erasure, with their token; erasure only after a second click.
  function myData(step, error) {
    var confirm = step === "confirm";
    mine.innerHTML = !stored.token ? "" : (step ? "<p" + (error ? ' role="alert">' + esc(error) : ">" +
      esc(T[confirm ? "erase_confirm" : "my_data_intro"])) + "</p>" : "") +
      buttons(!step ? [["mine", "my_data"]] : confirm ? [["mine", "cancel"], ["erase_yes", "erase_yes"]] :
        [["export", "download"], ["erase", "erase"]], "cg-lnk");
    if (step) mine.querySelector("button").focus();
  }

  function myRequest(method) {
    return fetch(api + "/privacy/me", {method: method, credentials: "include", headers: {"X-Consent-Token": stored.token}})
      .then(function (r) {
        if (!r.ok) throw new Error("consentgate: " + r.status);
        return r;
      });
  }

  function myError() {
    myData("open", T.my_data_error);
  }

  function hide() {
    banner.hidden = modal.hidden = true;
    reopen.hidden = C.reopen_position === "hidden";
    if (returnFocus && returnFocus !== d.body && returnFocus.focus) returnFocus.focus();
    returnFocus = null;
  }

  function ready(fn) {
    if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  function getConsent() {
    return current ? Object.assign({necessary: true}, current) : null;
  }

  consentMode("default", null);
  // SPA navigations: one page view per new URL, and only while analytics is granted.
  var pushState = history.pushState;
  history.pushState = function () {
    var result = pushState.apply(this, arguments);
    pageview();
    return result;
  };
  w.addEventListener("popstate", pageview);
  w.ConsentGate = {
    show: show,
    getConsent: getConsent,
    track: track,
    onChange: function (fn) { w.addEventListener("consentgate:change", function (e) { fn(e.detail); }); }
  };
  ready(function () {
    build();
    if (current) {
      hide();
      apply(current);
    } else {
      show();
    }
  });
})(window, document, CONSENTGATE_CSS, CONSENTGATE_CONFIG);
