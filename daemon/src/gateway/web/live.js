// mcpd status page: live updates. Polls the public registry once a second and updates each
// server's state and tool count in place; announces changes to screen readers. The page is
// complete without this script (it is served with JavaScript off too).
"use strict";
(function () {
  var script = document.currentScript;
  var registry = new URL("../../api/v1/mcp/registry", script ? script.src : location.href);
  var live = document.getElementById("live");
  var announce = document.getElementById("announce");
  var servers = document.querySelectorAll("[data-server]");
  if (!servers.length) {
    return;
  }
  var known = /^[a-z]+$/;
  // How many answers arrived: tests count polls instead of measuring time.
  var polls = 0;

  function update(entries) {
    var byName = new Map();
    entries.forEach(function (entry) {
      byName.set(entry.name, entry);
    });
    var changes = [];
    servers.forEach(function (node) {
      var name = node.getAttribute("data-server");
      var entry = byName.get(name);
      var state = entry && known.test(entry.status) ? entry.status : "removed";
      var badge = node.querySelector('[data-field="state"]');
      if (badge && badge.textContent !== state) {
        badge.textContent = state;
        badge.className = "state state-" + state;
        changes.push(name + " is " + state);
      }
      var tools = node.querySelector('[data-field="tools"]');
      if (tools && entry && typeof entry.tools_count === "number") {
        tools.textContent = String(entry.tools_count);
      }
    });
    if (announce && changes.length) {
      announce.textContent = changes.join("; ");
    }
  }

  function poll() {
    fetch(registry, { cache: "no-store", credentials: "omit" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (body) {
        update(Array.isArray(body.data) ? body.data : []);
        polls += 1;
        if (live) {
          live.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
          live.setAttribute("data-polls", String(polls));
        }
      })
      .catch(function () {
        if (live) {
          live.textContent = "Live updates paused: the gateway did not answer. Retrying.";
        }
      })
      .then(function () {
        setTimeout(poll, 1000);
      });
  }
  poll();
})();
