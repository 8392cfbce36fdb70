// The console without a framework: the page is server-rendered HTML with forms and works without
// this file. With it, the page is live (server-sent events from /console/events redraw the parts
// that changed) and forms are posted in the background, so what is typed and where the focus is
// survive an update.
"use strict";
(function () {
  var PARTS = ["live-notes", "live-dms", "live-channel"];
  var busy = false;
  var again = false;

  // Where the focus was, by element id or by its form's id and its name, so it can be found again.
  function focusKey() {
    var el = document.activeElement;
    if (!el || el === document.body) return null;
    if (el.id) return { id: el.id };
    var form = el.form || (el.closest && el.closest("form"));
    if (form && form.id) return { form: form.id, tag: el.tagName, name: el.getAttribute("name") };
    return null;
  }

  function restoreFocus(key) {
    if (!key) return;
    var el = null;
    if (key.id) el = document.getElementById(key.id);
    else {
      var form = document.getElementById(key.form);
      if (form) el = key.name ? form.querySelector(key.tag + '[name="' + key.name + '"]') : form.querySelector(key.tag);
    }
    if (el && el !== document.activeElement) el.focus({ preventScroll: true });
  }

  function swap(text) {
    var next = new DOMParser().parseFromString(text, "text/html");
    var focus = focusKey();
    var typed = {};
    PARTS.forEach(function (id) {
      var current = document.getElementById(id);
      var fresh = next.getElementById(id);
      if (!current || !fresh) return;
      current.querySelectorAll("input[type=text]").forEach(function (input) {
        if (input.id && input.value !== input.defaultValue) typed[input.id] = input.value;
      });
      current.replaceWith(document.adoptNode(fresh));
    });
    Object.keys(typed).forEach(function (id) {
      var input = document.getElementById(id);
      if (input) input.value = typed[id];
    });
    restoreFocus(focus);
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch("/console", { credentials: "same-origin", headers: { accept: "text/html" } })
      .then(function (response) {
        // Logged out meanwhile (or switched): let the server decide where to go.
        if (!response.ok || new URL(response.url).pathname !== "/console") {
          window.location.reload();
          return null;
        }
        return response.text();
      })
      .then(function (text) {
        if (text) swap(text);
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  function refused(text) {
    var doc = new DOMParser().parseFromString(text, "text/html");
    var notes = document.getElementById("live-notes");
    var main = doc.querySelector("main");
    if (!notes) return;
    var p = document.createElement("p");
    p.className = "refused";
    p.setAttribute("role", "alert");
    p.textContent = (main ? main.textContent : "The gateway refused the form.").trim();
    notes.prepend(p);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.closest(".console")) return;
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post") return;
    event.preventDefault();
    var body = new URLSearchParams(new FormData(form));
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    // getAttribute, not form.action: the button forms have an input named "action", which shadows it.
    fetch(form.getAttribute("action") || window.location.pathname, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) return refused(text);
          swap(text);
          if (form.id === "command") {
            var input = form.querySelector("input[name=text]");
            if (input) input.value = "";
          }
        });
      })
      .catch(function () {
        form.submit(); // the network hiccuped: the plain post shows what happened
      })
      .then(function () {
        if (button && button.isConnected) button.disabled = false;
      });
  });

  if (typeof EventSource === "function") {
    var broken = false;
    var events = new EventSource("/console/events");
    events.addEventListener("change", refresh);
    events.addEventListener("error", function () {
      broken = true;
    });
    events.addEventListener("open", function () {
      if (broken) refresh(); // whatever happened while the stream was down
      broken = false;
    });
    window.addEventListener("pagehide", function () {
      events.close();
    });
  }
})();
