import Foundation

/// The console's static files. Its own CSS and JavaScript are compiled in; Chart.js is Debian's
/// (libjs-chart.js), read from where the package puts it. Nothing is fetched from anywhere else,
/// at run time or ever.
public enum Assets {
    /// Debian's Chart.js (libjs-chart.js).
    public static let chartJSPath = "/usr/share/javascript/chart.js/chart.min.js"

    /// A static file by the name under /static/, or nil. Only these names exist: a request
    /// path is never joined to a directory, so there is nothing to traverse.
    public static func file(_ name: String, chartJS: String = chartJSPath) -> (type: String, body: Data)? {
        switch name {
        case "console.css": return ("text/css; charset=utf-8", Data(css.utf8))
        case "console.js": return ("text/javascript; charset=utf-8", Data(js.utf8))
        case "favicon.svg": return ("image/svg+xml", Data(icon.utf8))
        case "chart.min.js":
            guard let data = FileManager.default.contents(atPath: chartJS) else { return nil }
            return ("text/javascript; charset=utf-8", data)
        default: return nil
        }
    }

    static let icon = """
    <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1d232b"/>\
    <circle cx="5" cy="5" r="2" fill="#6fa8ff"/><circle cx="11" cy="5" r="2" fill="#6fa8ff"/><circle cx="8" cy="11" r="2" fill="#6fa8ff"/></svg>
    """

    static let css = """
    :root { --bg: #f6f7f9; --fg: #1d232b; --muted: #5b6674; --line: #d9dee5; --up: #1f8a4c; --down: #c62828; --unknown: #a36b00; --accent: #1f5fa8; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 14px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
    header { display: flex; align-items: center; gap: 1.5em; padding: .6em 1.2em; background: #1d232b; color: #fff; }
    header a { color: #cfd8e3; text-decoration: none; margin-right: 1em; }
    header a.current, header a:hover { color: #fff; border-bottom: 2px solid #6fa8ff; }
    .brand { font-weight: 700; } .cluster { color: #9fb0c3; }
    nav { flex: 1; } .logout { display: flex; gap: .5em; align-items: center; } .user { color: #cfd8e3; }
    main { padding: 1em 1.5em; max-width: 1400px; }
    h1 { font-size: 1.5em; margin: .2em 0 .6em; } h2 { font-size: 1.15em; margin: 1.4em 0 .5em; }
    table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
    th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid var(--line); vertical-align: top; }
    th a { color: inherit; } th { background: #eef1f5; }
    tr.down td:first-child { border-left: 4px solid var(--down); } tr.up td:first-child { border-left: 4px solid var(--up); }
    tr.unknown td:first-child { border-left: 4px solid var(--unknown); }
    .badge { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; background: #e3e7ec; }
    .badge.up, .badge.running, .badge.active, .badge.master { background: #d5f0df; color: var(--up); }
    .badge.down, .badge.error, .badge.failed, .badge.stopped, .badge.fault { background: #fbdcdc; color: var(--down); }
    .badge.unknown, .badge.drained, .badge.standby, .badge.backup { background: #fcefd2; color: var(--unknown); }
    .tiles { display: flex; flex-wrap: wrap; gap: 1em; }
    .tile { display: block; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8em 1.2em; color: inherit; text-decoration: none; min-width: 12em; }
    .tile b { font-size: 1.6em; display: block; } .tile.bad { border-color: var(--down); } .tile.bad b { color: var(--down); }
    .unavailable, .error { color: var(--down); } .ok { color: var(--up); }
    .events { list-style: none; padding: 0; } .events li { padding: .2em 0; border-bottom: 1px solid var(--line); } time { color: var(--muted); }
    .filter { display: flex; gap: .5em; margin-bottom: .6em; } .filter input[name=q] { width: 24em; }
    .count { color: var(--muted); } .pages { margin: .8em 0; }
    .ranges a { margin-right: .6em; } .ranges a.current { font-weight: 700; }
    .charts { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; background: #fff; border: 1px solid var(--line); padding: .5em; }
    figcaption { color: var(--muted); }
    dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; background: #fff; border: 1px solid var(--line); padding: .8em; }
    dt { color: var(--muted); } dd { margin: 0; }
    form.action { display: inline; } button { cursor: pointer; } button.danger { color: var(--down); }
    details.add { margin-bottom: .8em; } details.add form { display: flex; gap: .6em; flex-wrap: wrap; margin-top: .4em; align-items: end; }
    body.login { display: flex; justify-content: center; padding-top: 12vh; }
    body.login form { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1.5em 2em; display: flex; flex-direction: column; gap: .8em; width: 22em; }
    body.login label { display: flex; flex-direction: column; gap: .2em; }
    """

    static let js = """
    "use strict";
    // Confirmation for every action form.
    document.addEventListener("submit", (e) => {
      const msg = e.target.dataset.confirm;
      if (msg && !window.confirm(msg)) e.preventDefault();
    });
    // Live pages: the daemons' events (Server-Sent Events) refresh the main part in place.
    (function live() {
      const topics = document.body.dataset.live;
      if (!topics || !window.EventSource) return;
      let timer = null, started = 0, applied = 0, opened = false;
      const refresh = async () => {
        timer = null;
        const mine = ++started;
        const r = await fetch(location.href, { credentials: "same-origin" });
        if (!r.ok) return;
        const text = await r.text();
        // Refreshes can overlap: an older answer that arrives last must not undo a newer one.
        if (mine < applied) return;
        applied = mine;
        const doc = new DOMParser().parseFromString(text, "text/html");
        const fresh = doc.getElementById("main"), main = document.getElementById("main");
        if (fresh && main) { main.replaceWith(fresh); document.dispatchEvent(new Event("cm:refreshed")); }
      };
      const source = new EventSource("/events?topics=" + encodeURIComponent(topics));
      const schedule = () => { if (!timer) timer = setTimeout(refresh, 300); };
      for (const t of topics.split(" ")) source.addEventListener(t, schedule);
      // After a reconnect the events of the gap are lost: look again.
      source.addEventListener("open", () => { if (opened) schedule(); opened = true; });
    })();
    // Charts on a node's page, from /api/v1/nodes/NAME/metrics (Chart.js from Debian).
    function charts() {
      const box = document.querySelector(".charts");
      if (!box) return;
      if (!window.Chart) { box.insertAdjacentText("beforeend", "Charts need Chart.js (apt-get install libjs-chart.js)."); return; }
      const node = box.dataset.node, range = box.dataset.range;
      for (const canvas of box.querySelectorAll("canvas[data-series]")) {
        const series = canvas.dataset.series;
        fetch(`/api/v1/nodes/${encodeURIComponent(node)}/metrics?range=${encodeURIComponent(range)}&series=${encodeURIComponent(series)}`,
              { credentials: "same-origin" })
          .then((r) => r.ok ? r.json() : Promise.reject(r.status))
          .then((data) => {
            if (!data.series.some((s) => s.points.length > 0)) {
              canvas.replaceWith(document.createTextNode(data.lastError ? "no data: " + data.lastError : "no data in this range yet"));
              return;
            }
            const colors = ["#1f5fa8", "#c62828", "#1f8a4c"];
            const datasets = data.series.map((s, i) => ({
              label: s.name, borderColor: colors[i % 3], pointRadius: 0, borderWidth: 1.5,
              data: s.points.map((p) => ({ x: Date.parse(p.t), y: p.v })),
            }));
            new Chart(canvas, {
              type: "line", data: { datasets },
              options: { animation: false, parsing: false, responsive: false,
                scales: { x: { type: "linear", ticks: { maxTicksLimit: 6,
                  callback: (v) => new Date(v).toLocaleString([], range === "1h" ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" }) } } } },
            });
          })
          .catch((status) => canvas.insertAdjacentText("afterend", "no data (" + status + ")"));
      }
    }
    document.addEventListener("DOMContentLoaded", charts);
    // A live refresh brings new, empty canvases.
    document.addEventListener("cm:refreshed", charts);
    """
}
