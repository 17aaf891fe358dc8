import Mesh
import MeshCoordination
import MeshHTTP
import MeshTooling

/// The web view: one self-contained HTML page (inline CSS and JavaScript, nothing fetched from
/// elsewhere: meshes often run offline). It polls `/api/view` once a second and redraws.
///
/// The graph has one column of nodes (members of a pool framed together) and one column of
/// boxes for the things nodes listen to. Each box kind is one entry in `KINDS` below: `topics`
/// today; another kind (services) is one more entry reading one more array of `/api/view`.
/// Every name is put into the page with `textContent` or `setAttribute`, never as markup.
enum WebPage {
    static let bytes: [UInt8] = Array(html.utf8)

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>swift-mesh</title>
        <style>
        :root { --bg:#f6f7f9; --panel:#fff; --ink:#1d2330; --muted:#6b7385; --line:#dde1e8; --accent:#2f6fde;
                --node:#eef4ff; --node-edge:#2f6fde; --topic:#fff6e6; --topic-edge:#d98a00; --service:#eefaf1;
                --service-edge:#2e9d57; --bad:#d43c3c; --warn:#d98a00; --ok:#2e9d57; }
        * { box-sizing: border-box; }
        body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
               color:var(--ink); background:var(--bg); }
        header { display:flex; align-items:center; gap:24px; padding:10px 20px; background:#1d2330; color:#fff; flex-wrap:wrap; }
        header h1 { font-size:17px; margin:0; font-weight:650; letter-spacing:.2px; }
        header .facts { display:flex; gap:18px; flex-wrap:wrap; color:#c9cfdb; }
        header .facts b { color:#fff; font-weight:600; }
        #live { margin-left:auto; font-size:12px; padding:2px 10px; border-radius:10px; background:#2e9d57; color:#fff; }
        #live.down { background:var(--bad); }
        main { display:grid; grid-template-columns:minmax(0,1fr) 360px; gap:16px; padding:16px 20px; }
        section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px; min-width:0; }
        section h2 { font-size:12px; text-transform:uppercase; letter-spacing:.8px; color:var(--muted); margin:0 0 8px; font-weight:600; }
        #graph-wrap { overflow-x:auto; }
        svg text { font-family:inherit; }
        .box rect.frame { stroke-width:1.5; rx:7; }
        .node rect.frame { fill:var(--node); stroke:var(--node-edge); }
        .node.dropping rect.frame { stroke:var(--bad); stroke-width:2.5; }
        .topic rect.frame { fill:var(--topic); stroke:var(--topic-edge); }
        .service rect.frame { fill:var(--service); stroke:var(--service-edge); }
        .pool rect { fill:none; stroke:#9aa4b8; stroke-dasharray:5 4; rx:10; }
        .pool text { fill:var(--muted); font-size:12px; font-weight:600; }
        .title { font-weight:650; font-size:14px; fill:var(--ink); }
        .sub { font-size:11px; fill:var(--muted); font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
        .rate { font-size:12px; fill:var(--ink); }
        .rate.bad { fill:var(--bad); font-weight:600; }
        .column { font-size:11px; letter-spacing:.8px; fill:var(--muted); font-weight:600; }
        path.edge { fill:none; stroke-width:1.8; opacity:.75; }
        path.edge.send { stroke-dasharray:6 4; }
        .node.tool rect.frame { stroke-dasharray:3 3; }
        #empty { color:var(--muted); padding:30px 0; text-align:center; }
        table { border-collapse:collapse; width:100%; font-size:12.5px; }
        th, td { text-align:right; padding:4px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
        th { color:var(--muted); font-weight:600; font-size:11px; text-transform:uppercase; letter-spacing:.5px; }
        th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align:left; }
        td.mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:11.5px; }
        td.bad { color:var(--bad); font-weight:600; }
        #events { list-style:none; margin:0; padding:0; max-height:520px; overflow-y:auto; font-size:12.5px; }
        #events li { padding:5px 0; border-bottom:1px solid var(--line); }
        #events time { color:var(--muted); font-family:ui-monospace,monospace; font-size:11.5px; margin-right:6px; }
        .kind { display:inline-block; min-width:58px; text-align:center; font-size:11px; font-weight:600; border-radius:4px;
                padding:0 5px; margin-right:6px; color:#fff; }
        .kind.joined { background:var(--ok); } .kind.left { background:#7a8396; }
        .kind.evicted { background:var(--warn); } .kind.refused { background:var(--bad); }
        .reason { color:var(--muted); display:block; margin-left:72px; word-break:break-word; }
        #refused { font-size:12.5px; margin-top:10px; }
        #refused span { display:inline-block; margin:2px 8px 2px 0; }
        #refused b { color:var(--bad); }
        .wide { grid-column:1 / -1; }
        @media (max-width: 900px) { main { grid-template-columns:1fr; } }
        </style>
        </head>
        <body>
        <header>
          <h1>swift-mesh</h1>
          <div class="facts">
            <span>coordinator <b id="address">…</b></span>
            <span>uptime <b id="uptime">…</b></span>
            <span>version <b id="version">…</b></span>
            <span>nodes <b id="node-count">…</b></span>
            <span>topics <b id="topic-count">…</b></span>
          </div>
          <span id="live">connecting…</span>
        </header>
        <main>
          <section>
            <h2>Mesh</h2>
            <div id="graph-wrap"><svg id="graph" xmlns="http://www.w3.org/2000/svg" width="800" height="120"></svg></div>
            <div id="empty" hidden>No nodes yet.</div>
          </section>
          <section>
            <h2>Recent events</h2>
            <ul id="events"></ul>
            <div id="refused"></div>
          </section>
          <section class="wide">
            <h2>Nodes</h2>
            <table>
              <thead><tr><th>Name</th><th>ID</th><th>Sent/s</th><th>Received/s</th><th>Out</th><th>In</th>
                <th>Sent</th><th>Received</th><th>Dropped</th><th>Decode failures</th><th>Reconnects</th><th>Heard</th></tr></thead>
              <tbody id="node-rows"></tbody>
            </table>
          </section>
        </main>
        <script>
        "use strict";
        const SVG = "http://www.w3.org/2000/svg";
        const NODE_W = 250, NODE_H = 64, BOX_W = 230, BOX_H = 56, GAP = 12, TOP = 44;

        // The box kinds drawn in the right-hand column: each reads one array of /api/view.
        // A kind's items name the nodes they connect to in `nodes` (ids).
        const KINDS = [
          { kind: "topic", list: v => v.topics || [], key: t => t.topic, title: t => t.topic + (t.type ? " : " + t.type : ""),
            senders: t => t.senders || [],
            sub: t => (t.senders || []).length + ((t.senders || []).length === 1 ? " sender · " : " senders · ") +
              t.listeners + (t.listeners === 1 ? " listener" : " listeners") + " · " + t.groups.length +
              (t.groups.length === 1 ? " group" : " groups"),
            rate: t => rate(t.messagesPerSecond) + " msg/s · " + bytes(t.bytesPerSecond) + "/s", color: "#d98a00" },
          { kind: "service", list: v => v.services || [], key: s => s.service || s.name, title: s => s.service || s.name,
            senders: s => [],
            sub: s => (s.nodes || []).length + ((s.nodes || []).length === 1 ? " provider" : " providers") + " · " +
              (s.groups || []).map(g => g.name + (g.members > 1 ? " ×" + g.members : "")).join(", "), rate: s => s.requestsPerSecond != null ? rate(s.requestsPerSecond) + " req/s" : "",
            color: "#2e9d57" },
        ];

        function el(tag, attrs, parent) {
          const e = document.createElementNS(SVG, tag);
          for (const k in attrs) e.setAttribute(k, attrs[k]);
          if (parent) parent.appendChild(e);
          return e;
        }
        function label(parent, x, y, value, cls) {
          const t = el("text", { x: x, y: y, class: cls }, parent);
          t.textContent = value;
          return t;
        }
        function rate(n) {
          if (!n) return "0";
          if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
          if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
          return n >= 10 ? n.toFixed(0) : n.toFixed(1);
        }
        function bytes(n) {
          if (!n) return "0 B";
          const units = ["B", "KB", "MB", "GB", "TB"];
          let i = 0;
          while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
          return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
        }
        function duration(s) {
          if (s < 60) return Math.floor(s) + "s";
          if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
          if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
          return Math.floor(s / 86400) + "d" + Math.floor(s % 86400 / 3600) + "h";
        }
        function short(id) { return id.length > 8 ? id.slice(0, 8) : id; }
        function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

        function drawNode(svg, node, x, y) {
          const g = el("g", { class: "box node", "data-node-id": node.id, "data-node-name": node.name,
                              transform: "translate(" + x + "," + y + ")" }, svg);
          if (node.rates.messagesDropped > 0) g.classList.add("dropping");
          if (node.tool) g.classList.add("tool");
          el("rect", { class: "frame", width: NODE_W, height: NODE_H }, g);
          label(g, 12, 20, node.name + (node.tool ? " (mesh tool)" : ""), "title");
          label(g, NODE_W - 12, 20, short(node.id), "sub").setAttribute("text-anchor", "end");
          // Rates need two heartbeats: until then "–", never a made-up 0.
          const known = node.ratesKnown !== false;
          label(g, 12, 39, "↑ " + (known ? rate(node.rates.messagesSent) : "–") + " msg/s  ↓ " +
                (known ? rate(node.rates.messagesReceived) : "–") + " msg/s", "rate");
          const drops = node.stats.messagesDropped, fails = node.stats.decodeFailures;
          const bad = node.rates.messagesDropped > 0 || node.rates.decodeFailures > 0;
          label(g, 12, 56, (known ? bytes(node.rates.bytesSent + node.rates.bytesReceived) : "–") + "/s · drops " + drops +
                (node.rates.messagesDropped > 0 ? " (" + rate(node.rates.messagesDropped) + "/s)" : "") +
                (fails > 0 ? " · decode failures " + fails : ""), bad ? "rate bad" : "rate");
          const title = el("title", {}, g);
          title.textContent = node.name + " " + node.id + " at " + node.address + (node.pid ? " pid " + node.pid : "");
        }

        function drawBox(svg, kind, item, x, y) {
          const attrs = { class: "box " + kind.kind, transform: "translate(" + x + "," + y + ")" };
          attrs["data-" + kind.kind] = kind.key(item);
          const g = el("g", attrs, svg);
          el("rect", { class: "frame", width: BOX_W, height: BOX_H }, g);
          label(g, 12, 20, kind.title(item), "title");
          label(g, 12, 37, kind.sub(item), "sub");
          label(g, 12, 51, kind.rate(item), "rate");
        }

        function renderGraph(view) {
          const svg = document.getElementById("graph");
          clear(svg);
          const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
                                        orient: "auto-start-reverse" }, el("defs", {}, svg));
          el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#d98a00" }, marker);
          document.getElementById("empty").hidden = view.nodes.length > 0;
          const width = Math.max(720, document.getElementById("graph-wrap").clientWidth - 4);
          label(svg, 24, 22, "NODES", "column");
          const boxX = width - BOX_W - 24;
          label(svg, boxX, 22, KINDS.filter(k => k.list(view).length).map(k => k.kind.toUpperCase() + "S").join(" · "), "column");

          // Nodes that share a name form a pool: drawn together, framed.
          const pools = [], byName = new Map();
          // The mesh tool's nodes (mesh-send, ...) share names but are no pool: each stands alone.
          for (const node of view.nodes) {
            const key = node.tool ? "\u0000" + node.id : node.name;
            if (!byName.has(key)) { const p = { name: node.name, nodes: [] }; byName.set(key, p); pools.push(p); }
            byName.get(key).nodes.push(node);
          }
          const anchor = new Map();
          const nodeLayer = el("g", {}, null), edgeLayer = el("g", {}, svg);
          svg.appendChild(nodeLayer);
          let y = TOP, x = 24;
          for (const pool of pools) {
            if (pool.nodes.length > 1) {
              const height = pool.nodes.length * (NODE_H + 8) + 30;
              const frame = el("g", { class: "pool", "data-pool": pool.name }, nodeLayer);
              el("rect", { x: x - 8, y: y, width: NODE_W + 16, height: height }, frame);
              label(frame, x, y + 17, "pool “" + pool.name + "” · " + pool.nodes.length + " members", "");
              y += 26;
              for (const node of pool.nodes) { drawNode(nodeLayer, node, x, y); anchor.set(node.id, y + NODE_H / 2); y += NODE_H + 8; }
              y += 4 + GAP;
            } else {
              drawNode(nodeLayer, pool.nodes[0], x, y); anchor.set(pool.nodes[0].id, y + NODE_H / 2); y += NODE_H + GAP;
            }
          }
          let height = y;

          // Boxes ordered by the mean height of their nodes, so edges cross as little as possible.
          const boxes = [];
          for (const kind of KINDS) for (const item of kind.list(view)) {
            const ys = (item.nodes || []).map(id => anchor.get(id)).filter(v => v !== undefined);
            boxes.push({ kind: kind, item: item, ys: ys, centre: ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 1e9 });
          }
          boxes.sort((a, b) => a.centre - b.centre || String(a.kind.key(a.item)).localeCompare(String(b.kind.key(b.item))));
          let next = TOP;
          for (const box of boxes) {
            const top = Math.max(next, (box.centre < 1e9 ? box.centre : next) - BOX_H / 2);
            drawBox(nodeLayer, box.kind, box.item, boxX, top);
            const ty = top + BOX_H / 2;
            for (const ny of box.ys) {
              const x1 = x + NODE_W, x2 = boxX, dx = (x2 - x1) * 0.45;
              el("path", { class: "edge", stroke: box.kind.color, d: "M" + x1 + "," + ny + " C" + (x1 + dx) + "," + ny + " " +
                (x2 - dx) + "," + ty + " " + x2 + "," + ty }, edgeLayer);
            }
            // A sender's edge: dashed, with an arrow towards the topic.
            for (const id of box.kind.senders(box.item)) {
              const ny = anchor.get(id);
              if (ny === undefined) continue;
              const x1 = x + NODE_W, x2 = boxX, dx = (x2 - x1) * 0.45;
              el("path", { class: "edge send", stroke: box.kind.color, "data-sender": id, "marker-end": "url(#arrow)",
                d: "M" + x1 + "," + (ny - 8) + " C" + (x1 + dx) + "," + (ny - 8) + " " + (x2 - dx) + "," + (ty - 8) + " " + x2 + "," + (ty - 8) }, edgeLayer);
            }
            next = top + BOX_H + GAP;
            height = Math.max(height, next);
          }
          svg.setAttribute("width", width);
          svg.setAttribute("height", height + 8);
        }

        function renderTable(view) {
          const body = document.getElementById("node-rows");
          clear(body);
          for (const node of view.nodes) {
            const tr = document.createElement("tr");
            tr.setAttribute("data-node-id", node.id);
            const cells = [
              [node.name, ""], [node.id, "mono"], [rate(node.rates.messagesSent), ""], [rate(node.rates.messagesReceived), ""],
              [bytes(node.rates.bytesSent) + "/s", ""], [bytes(node.rates.bytesReceived) + "/s", ""],
              [String(node.stats.messagesSent), ""], [String(node.stats.messagesReceived), ""],
              [String(node.stats.messagesDropped), node.stats.messagesDropped > 0 ? "bad" : ""],
              [String(node.stats.decodeFailures), node.stats.decodeFailures > 0 ? "bad" : ""],
              [String(node.stats.reconnects), ""], [node.lastHeard.toFixed(1) + "s", ""],
            ];
            for (const [value, cls] of cells) {
              const td = document.createElement("td");
              td.textContent = value;
              if (cls) td.className = cls;
              tr.appendChild(td);
            }
            body.appendChild(tr);
          }
        }

        function renderEvents(view) {
          const list = document.getElementById("events");
          clear(list);
          for (const event of view.events.slice().reverse().slice(0, 100)) {
            const li = document.createElement("li");
            li.setAttribute("data-event", event.kind);
            const time = document.createElement("time");
            time.textContent = new Date(event.time * 1000).toLocaleTimeString([], { hour12: false });
            const kind = document.createElement("span");
            kind.className = "kind " + event.kind;
            kind.textContent = event.kind;
            const what = document.createElement("span");
            what.textContent = (event.node ? event.node + " (" + short(event.id) + ") " : "") + "from " + event.peer;
            li.append(time, kind, what);
            if (event.reason) {
              const reason = document.createElement("span");
              reason.className = "reason";
              reason.textContent = (event.category ? event.category + ": " : "") + event.reason;
              li.appendChild(reason);
            }
            list.appendChild(li);
          }
          if (!view.events.length) {
            const li = document.createElement("li");
            li.textContent = "Nothing yet.";
            list.appendChild(li);
          }
          const refused = document.getElementById("refused");
          clear(refused);
          const total = Object.values(view.refused).reduce((a, b) => a + b, 0);
          const head = document.createElement("div");
          head.textContent = "Connections refused: " + total;
          refused.appendChild(head);
          for (const [reason, count] of Object.entries(view.refused)) {
            if (!count) continue;
            const span = document.createElement("span");
            const b = document.createElement("b");
            b.textContent = String(count);
            span.append(reason.replace(/_/g, " ") + " ", b);
            refused.appendChild(span);
          }
        }

        function render(view) {
          const c = view.coordinator;
          document.getElementById("address").textContent = c.address;
          document.getElementById("uptime").textContent = duration(c.uptime);
          document.getElementById("version").textContent = String(c.version);
          document.getElementById("node-count").textContent = String(c.nodeCount);
          document.getElementById("topic-count").textContent = String(c.topicCount);
          renderGraph(view);
          renderTable(view);
          renderEvents(view);
          document.body.setAttribute("data-version", String(c.version));
          document.body.setAttribute("data-updated", String(Date.now()));
        }

        let last = null;
        async function refresh() {
          const live = document.getElementById("live");
          try {
            // From the origin, never from the page's own URL: opened with mesh:TOKEN@ in it, that
            // URL holds credentials, and a fetch from it is refused before it is sent.
            const response = await fetch(location.origin + "/api/view", { cache: "no-store", credentials: "same-origin" });
            if (response.status === 401) {
              throw new Error("this mesh needs its token: open " + location.protocol + "//mesh:TOKEN@" + location.host +
                              "/ or send Authorization: Bearer TOKEN (mesh http-token prints it)");
            }
            if (!response.ok) throw new Error("HTTP " + response.status);
            last = await response.json();
            render(last);
            live.textContent = "live";
            live.className = "";
          } catch (error) {
            live.textContent = "disconnected: " + error.message;
            live.className = "down";
          }
        }
        window.addEventListener("resize", () => { if (last) renderGraph(last); });
        refresh();
        setInterval(refresh, 1000);
        </script>
        </body>
        </html>
        """#
}
