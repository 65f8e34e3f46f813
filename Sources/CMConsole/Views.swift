import CMTypes
import CMWire
import Foundation

/// One node as the console lists it: cm-pxed's inventory joined with cm-healthd's checks.
public struct NodeRow: Sendable, Equatable {
    public var name: String
    public var address: String
    public var mac: String
    public var group: String
    public var image: String
    public var boot: String
    public var lastSeen: Date?
    /// The worst of its checks (down, unknown, up); nil: it has none.
    public var health: HealthState?
    public var checksDown: Int
    public var checks: Int

    public init(name: String, address: String, mac: String, group: String, image: String, boot: String, lastSeen: Date?, health: HealthState?,
                checksDown: Int, checks: Int) {
        self.name = name
        self.address = address
        self.mac = mac
        self.group = group
        self.image = image
        self.boot = boot
        self.lastSeen = lastSeen
        self.health = health
        self.checksDown = checksDown
        self.checks = checks
    }

    /// The inventory and the checks joined by node name; a node that only has checks (not in
    /// cm-pxed's inventory) is listed too.
    public static func join(nodes: [NodeInfo], checks: [CheckStatus]) -> [NodeRow] {
        var tallies: [NodeName: NodeHealthTally] = [:]
        for c in checks {
            tallies[c.id.node, default: NodeHealthTally(node: c.id.node, checks: 0, down: 0, unknown: 0, address: c.address)].count(c.state)
        }
        return join(nodes: nodes, tallies: tallies.values.sorted { $0.node < $1.node })
    }

    /// The inventory and cm-healthd's per-node tallies joined by node name.
    public static func join(nodes: [NodeInfo], tallies: [NodeHealthTally]) -> [NodeRow] {
        let byNode = Dictionary(tallies.map { ($0.node.rawValue, $0) }, uniquingKeysWith: { a, _ in a })
        var rows = nodes.map { n in
            NodeRow(name: n.name, address: n.reachableAddress?.description ?? "", mac: n.mac.description, group: n.group,
                    image: n.lastImage ?? n.image ?? "", boot: n.state.rawValue, lastSeen: n.lastSeen, health: nil, checksDown: 0, checks: 0)
        }
        let known = Set(nodes.map(\.name))
        for t in tallies where !known.contains(t.node.rawValue) {
            rows.append(NodeRow(name: t.node.rawValue, address: t.address.description, mac: "", group: "", image: "", boot: "", lastSeen: nil,
                                health: nil, checksDown: 0, checks: 0))
        }
        for i in rows.indices {
            guard let t = byNode[rows[i].name] else { continue }
            rows[i].checks = t.checks
            rows[i].checksDown = t.down
            rows[i].health = t.health
        }
        return rows
    }
}

/// The nodes page's query: `?q=TEXT&health=down&sort=name&page=N`.
public struct NodeQuery: Sendable, Equatable {
    public enum Sort: String, Sendable, CaseIterable { case name, address, group, health, boot, seen }
    public var text = ""
    public var health: HealthState?
    public var sort = Sort.name
    public var descending = false
    public var page = 1
    public static let pageSize = 200

    public init() {}

    public init(query: [String: String]) {
        text = String((query["q"] ?? "").prefix(100))
        health = query["health"].flatMap(HealthState.init(rawValue:))
        let s = query["sort"] ?? "name"
        descending = s.hasPrefix("-")
        sort = Sort(rawValue: descending ? String(s.dropFirst()) : s) ?? .name
        page = max(1, min(100_000, Int(query["page"] ?? "1") ?? 1))
    }

    /// The rows it selects, sorted, and how many matched in all.
    public func apply(_ rows: [NodeRow]) -> (rows: [NodeRow], matched: Int) {
        let needle = text.lowercased()
        var out = rows.filter { r in
            (health == nil || r.health == health)
                && (needle.isEmpty || [r.name, r.address, r.mac, r.group, r.image].contains { $0.lowercased().contains(needle) })
        }
        func rank(_ h: HealthState?) -> Int { h == .down ? 0 : h == .unknown ? 1 : h == .up ? 2 : 3 }
        out.sort { a, b in
            let less: Bool
            switch sort {
            case .name: less = a.name < b.name
            case .address: less = (IPv4Address(a.address)?.rawValue ?? .max, a.name) < (IPv4Address(b.address)?.rawValue ?? .max, b.name)
            case .group: less = (a.group, a.name) < (b.group, b.name)
            case .health: less = (rank(a.health), a.name) < (rank(b.health), b.name)
            case .boot: less = (a.boot, a.name) < (b.boot, b.name)
            case .seen: less = ((a.lastSeen ?? .distantPast), a.name) < ((b.lastSeen ?? .distantPast), b.name)
            }
            return descending ? !less && a.name != b.name : less
        }
        let matched = out.count
        let start = min(out.count, (page - 1) * Self.pageSize)
        return (Array(out[start..<min(out.count, start + Self.pageSize)]), matched)
    }

    func link(sort newSort: Sort) -> String {
        let flip = newSort == sort && !descending
        return href(sort: (flip ? "-" : "") + newSort.rawValue, page: 1)
    }

    /// The query in its canonical form: what a rendered list is kept under.
    public var key: String { href(page: page) }

    func href(sort: String? = nil, page: Int) -> String {
        var parts: [String] = []
        if !text.isEmpty { parts.append("q=\(HTML.component(text))") }
        if let health { parts.append("health=\(health.rawValue)") }
        parts.append("sort=\(sort ?? ((descending ? "-" : "") + self.sort.rawValue))")
        if page > 1 { parts.append("page=\(page)") }
        return "/nodes?" + parts.joined(separator: "&amp;")
    }
}

/// The pages, as pure functions of what the daemons answered: no I/O here.
public enum Views {
    public struct Chrome: Sendable {
        public var user: String
        public var csrf: String
        public var cluster: String
        public init(user: String, csrf: String, cluster: String) {
            self.user = user
            self.csrf = csrf
            self.cluster = cluster
        }
    }

    static let sections: [(path: String, title: String)] = [
        ("/", "Overview"), ("/nodes", "Nodes"), ("/checks", "Health checks"), ("/lb", "Load balancer"), ("/vip", "VIP and roles"),
        ("/images", "Images"), ("/replication", "Replication"), ("/snapshots", "Snapshots"),
    ]

    /// The frame of every page: navigation, who is logged in, the logout form. `live` names the
    /// event topics whose events make the page refresh its main part (console.js).
    public static func page(_ title: String, path: String, chrome: Chrome, live: [String] = [], scripts: [String] = [], body: HTML) -> HTML {
        var h = HTML()
        h.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">")
        h.raw("<title>"); h.text("\(title) · \(chrome.cluster) · ClusterMaker"); h.raw("</title>")
        h.raw("<link rel=\"stylesheet\" href=\"/static/console.css\"><link rel=\"icon\" href=\"/static/favicon.svg\">")
        h.raw("<meta name=\"csrf\" content=\""); h.text(chrome.csrf); h.raw("\">")
        for s in scripts { h.raw("<script src=\""); h.text(s); h.raw("\" defer></script>") }
        h.raw("<script src=\"/static/console.js\" defer></script></head>\n<body")
        if !live.isEmpty { h.raw(" data-live=\""); h.text(live.joined(separator: " ")); h.raw("\"") }
        h.raw("><header><span class=\"brand\">ClusterMaker</span> <span class=\"cluster\">"); h.text(chrome.cluster); h.raw("</span><nav>")
        for s in sections {
            let current = s.path == path || (s.path != "/" && path.hasPrefix(s.path + "/"))
            h.raw("<a href=\"\(s.path)\"\(current ? " class=\"current\"" : "")>"); h.text(s.title); h.raw("</a>")
        }
        h.raw("</nav><form method=\"post\" action=\"/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"")
        h.text(chrome.csrf); h.raw("\"><span class=\"user\">"); h.text(chrome.user); h.raw("</span> <button>Log out</button></form></header>\n")
        h.raw("<main id=\"main\">"); h.append(body); h.raw("</main></body></html>\n")
        return h
    }

    public static func login(cluster: String, message: String?, next: String) -> HTML {
        var h = HTML()
        h.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · ")
        h.text(cluster); h.raw(" · ClusterMaker</title><link rel=\"stylesheet\" href=\"/static/console.css\"><link rel=\"icon\" href=\"/static/favicon.svg\"></head>")
        h.raw("<body class=\"login\"><form method=\"post\" action=\"/login\"><h1>ClusterMaker</h1><p class=\"cluster\">"); h.text(cluster); h.raw("</p>")
        if let message { h.raw("<p class=\"error\" role=\"alert\">"); h.text(message); h.raw("</p>") }
        h.raw("<input type=\"hidden\" name=\"next\" value=\""); h.text(next); h.raw("\">")
        h.raw("<label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label>")
        h.raw("<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>")
        h.raw("<button>Log in</button></form></body></html>\n")
        return h
    }

    /// A daemon that did not answer, said in place of its part of the page.
    static func unavailable(_ error: WireError) -> HTML {
        var h = HTML()
        h.raw("<p class=\"unavailable\">"); h.text(error.message); h.raw("</p>")
        return h
    }

    static func hidden(_ name: String, _ value: String) -> HTML {
        var h = HTML()
        h.raw("<input type=\"hidden\" name=\""); h.text(name); h.raw("\" value=\""); h.text(value); h.raw("\">")
        return h
    }

    static func badge(_ state: String) -> String {
        "<span class=\"badge \(HTML.escape(state))\">\(HTML.escape(state))</span>"
    }

    static func healthBadge(_ h: HealthState?) -> String { badge(h?.rawValue ?? "none") }

    // MARK: Overview

    public struct Overview: Sendable {
        public var statuses: [(daemon: SuiteDaemon, answer: SuiteClient.Answer<DaemonStatus>)]
        public var vip: SuiteClient.Answer<VipStatusReply>
        public var summary: NodeSummary
        public var lb: SuiteClient.Answer<LbStatusReply>
        public var events: SuiteClient.Answer<[HealthTransition]>
        public var now: Date
        public init(statuses: [(daemon: SuiteDaemon, answer: SuiteClient.Answer<DaemonStatus>)], vip: SuiteClient.Answer<VipStatusReply>,
                    summary: NodeSummary, lb: SuiteClient.Answer<LbStatusReply>, events: SuiteClient.Answer<[HealthTransition]>, now: Date) {
            self.statuses = statuses
            self.vip = vip
            self.summary = summary
            self.lb = lb
            self.events = events
            self.now = now
        }
    }

    public static func overview(_ o: Overview) -> HTML {
        var h = HTML()
        h.raw("<h1>Overview</h1><section class=\"tiles\">")
        // Nodes by health and boot state.
        let down = o.summary.downCount, booting = o.summary.bootingCount
        h.raw("<a class=\"tile\(down > 0 ? " bad" : "")\" href=\"/nodes?health=down\"><b id=\"nodes-down\">\(down)</b> of \(o.summary.rows.count) nodes down</a>")
        h.raw("<a class=\"tile\" href=\"/nodes?sort=boot\"><b>\(booting)</b> booting</a>")
        let failing = o.summary.failing
        h.raw("<a class=\"tile\(failing.isEmpty ? "" : " bad")\" href=\"/checks?state=down\"><b id=\"checks-down\">\(o.summary.failingCount)</b> of \(o.summary.checkCount) checks failing</a>")
        if let lb = o.lb.value {
            let rps = lb.frontends.reduce(0) { $0 + $1.requestsPerSecond }, errors = lb.frontends.reduce(0) { $0 + $1.errors }
            h.raw("<a class=\"tile\" href=\"/lb\"><b>\(Format.rate(rps))</b> requests/s, \(errors) errors</a>")
        }
        if let vip = o.vip.value {
            h.raw("<a class=\"tile\" href=\"/vip\">this master: \(badge(vip.role.rawValue)) epoch \(vip.epoch)</a>")
        }
        h.raw("</section>")

        h.raw("<h2>Daemons</h2><table class=\"daemons\"><thead><tr><th>daemon</th><th>state</th><th>status</th></tr></thead><tbody>")
        for (daemon, answer) in o.statuses {
            h.raw("<tr><td>"); h.text(daemon.name); h.raw("</td>")
            switch answer {
            case .success(let s): h.raw("<td>\(badge("running"))</td><td>"); h.text(s.status); h.raw("</td>")
            case .failure(let e): h.raw("<td>\(badge(e.code == .notRunning ? "stopped" : "error"))</td><td>"); h.text(e.message); h.raw("</td>")
            }
            h.raw("</tr>")
        }
        h.raw("</tbody></table>")

        h.raw("<h2>Failing checks</h2>")
        if let e = o.summary.checksProblem {
            h.append(unavailable(e))
        } else if failing.isEmpty {
            h.raw("<p class=\"ok\">None.</p>")
        } else {
            h.append(checkTable(Array(failing.prefix(50)), now: o.now))
            if o.summary.failingCount > 50 { h.raw("<p><a href=\"/checks?state=down\">All \(o.summary.failingCount) failing checks</a></p>") }
        }

        h.raw("<h2>Newest events</h2>")
        switch o.events {
        case .failure(let e): h.append(unavailable(e))
        case .success(let events): h.append(eventList(events))
        }
        return h
    }

    static func eventList(_ events: [HealthTransition]) -> HTML {
        var h = HTML()
        guard !events.isEmpty else { h.raw("<p>None yet.</p>"); return h }
        h.raw("<ul class=\"events\">")
        for e in events {
            h.raw("<li><time>"); h.text(Format.time(e.at)); h.raw("</time> "); h.text(e.id.description)
            h.raw(" \(badge(e.from.rawValue)) → \(badge(e.to.rawValue)) "); h.text(e.message); h.raw("</li>")
        }
        h.raw("</ul>")
        return h
    }

    // MARK: Nodes

    public static func nodes(_ rows: SuiteClient.Answer<[NodeRow]>, query: NodeQuery, csrf: String = "") -> HTML {
        nodes(table: nodesTable(rows, query: query), query: query, csrf: csrf)
    }

    /// The node list's page around its table (which the console keeps rendered per query and
    /// answer: it is most of the work).
    public static func nodes(table: HTML, query: NodeQuery, csrf: String) -> HTML {
        var h = HTML()
        h.raw("<h1>Nodes</h1><details class=\"add\"><summary>Add a node</summary><form method=\"post\" action=\"/actions/node/add\" class=\"add-node\">")
        h.append(hidden("csrf", csrf))
        h.raw("<label>MAC <input name=\"mac\" required placeholder=\"52:54:00:12:34:56\"></label> <label>name <input name=\"name\" placeholder=\"cm-pxed's pattern\"></label> ")
        h.raw("<label>address <input name=\"address\" placeholder=\"from the pool\"></label> <label>group <input name=\"group\" placeholder=\"default\"></label> ")
        h.raw("<button>Add</button></form></details><form class=\"filter\" method=\"get\" action=\"/nodes\"><input name=\"q\" placeholder=\"name, address, MAC, group, image\" value=\"")
        h.text(query.text); h.raw("\"><select name=\"health\"><option value=\"\">any health</option>")
        for s in HealthState.allCases {
            h.raw("<option\(query.health == s ? " selected" : "")>\(s.rawValue)</option>")
        }
        h.raw("</select><input type=\"hidden\" name=\"sort\" value=\"\(query.descending ? "-" : "")\(query.sort.rawValue)\"><button>Filter</button></form>")
        h.append(table)
        return h
    }

    /// The count, the table of one page of rows and the page links.
    public static func nodesTable(_ rows: SuiteClient.Answer<[NodeRow]>, query: NodeQuery) -> HTML {
        var h = HTML()
        let all: [NodeRow]
        switch rows {
        case .failure(let e): h.append(unavailable(e)); return h
        case .success(let r): all = r
        }
        let (page, matched) = query.apply(all)
        h.raw("<p class=\"count\">\(matched) of \(all.count) nodes</p><table class=\"nodes sortable\"><thead><tr>")
        for (sort, title) in [(NodeQuery.Sort.name, "name"), (.address, "address"), (.group, "group"), (.health, "health"), (.boot, "boot"), (.seen, "last seen")] {
            h.raw("<th><a href=\"\(query.link(sort: sort))\">\(title)\(query.sort == sort ? (query.descending ? " ▼" : " ▲") : "")</a></th>")
        }
        h.raw("<th>image</th><th>checks</th></tr></thead><tbody>")
        for r in page {
            h.raw("<tr class=\"\(r.health?.rawValue ?? "none")\" data-node=\""); h.text(r.name); h.raw("\"><td><a href=\"/nodes/\(HTML.component(r.name))\">")
            h.text(r.name); h.raw("</a></td><td>"); h.text(r.address); h.raw("</td><td>"); h.text(r.group); h.raw("</td><td>")
            h.raw(healthBadge(r.health)); h.raw("</td><td>"); h.text(r.boot); h.raw("</td><td>"); h.text(Format.age(r.lastSeen)); h.raw("</td><td>")
            h.text(r.image); h.raw("</td><td>\(r.checksDown > 0 ? "\(r.checksDown) down of " : "")\(r.checks)</td></tr>")
        }
        h.raw("</tbody></table>")
        let pages = max(1, (matched + NodeQuery.pageSize - 1) / NodeQuery.pageSize)
        if pages > 1 {
            h.raw("<nav class=\"pages\">")
            if query.page > 1 { h.raw("<a href=\"\(query.href(page: query.page - 1))\">← previous</a> ") }
            h.raw("page \(query.page) of \(pages)")
            if query.page < pages { h.raw(" <a href=\"\(query.href(page: query.page + 1))\">next →</a>") }
            h.raw("</nav>")
        }
        return h
    }

    // MARK: One node

    public struct NodeDetail: Sendable {
        public var name: String
        public var info: SuiteClient.Answer<NodeInfo>
        public var checks: SuiteClient.Answer<[CheckStatus]>
        public var events: SuiteClient.Answer<[HealthTransition]>
        public var range: String
        public var now: Date
        /// cm-pxed's images, for the next-boot choice.
        public var images: [String]
        public init(name: String, info: SuiteClient.Answer<NodeInfo>, checks: SuiteClient.Answer<[CheckStatus]>,
                    events: SuiteClient.Answer<[HealthTransition]>, range: String, now: Date, images: [String] = []) {
            self.images = images
            self.name = name
            self.info = info
            self.checks = checks
            self.events = events
            self.range = range
            self.now = now
        }
    }

    /// The chart ranges: label and seconds.
    public static let ranges: [(label: String, seconds: Int)] = [("1h", 3600), ("24h", 86400), ("7d", 7 * 86400)]

    public static func node(_ d: NodeDetail, csrf: String) -> HTML {
        var h = HTML()
        h.raw("<h1>Node "); h.text(d.name); h.raw("</h1>")
        switch d.info {
        case .failure(let e) where e.code == .notFound: h.raw("<p>Not in cm-pxed's inventory.</p>")
        case .failure(let e): h.append(unavailable(e))
        case .success(let n):
            h.raw("<dl class=\"facts\">")
            let facts: [(String, String)] = [
                ("MAC", n.mac.description), ("address", n.address?.description ?? (n.seenAddress.map { "\($0) (seen)" } ?? "–")), ("group", n.group),
                ("image", n.image ?? "the group's"), ("next boot", n.nextImage ?? "–"), ("booted", n.lastImage ?? "–"), ("boot state", n.state.rawValue),
                ("boots", String(n.bootCount)), ("first seen", Format.time(n.firstSeen)), ("last seen", Format.time(n.lastSeen)), ("firmware", n.arch ?? "–"),
                ("BMC", n.bmc?.description ?? "–"),
            ]
            for (k, v) in facts { h.raw("<dt>"); h.text(k); h.raw("</dt><dd>"); h.text(v); h.raw("</dd>") }
            h.raw("</dl>")
        }
        h.raw("<form method=\"post\" action=\"/actions/drain\" class=\"action\" data-confirm=\"Drain every load-balanced server of this node?\">")
        h.raw("<input type=\"hidden\" name=\"csrf\" value=\""); h.text(csrf); h.raw("\"><input type=\"hidden\" name=\"target\" value=\"")
        h.text(d.name); h.raw("\"><input type=\"hidden\" name=\"next\" value=\"/nodes/\(HTML.component(d.name))\">")
        h.raw("<button name=\"drain\" value=\"1\">Drain</button> <button name=\"drain\" value=\"0\">Undrain</button></form>")
        if case .success(let n) = d.info {
            h.raw(" <form method=\"post\" action=\"/actions/node/next-boot\" class=\"action\" data-confirm=\"Set the image of this node's next boot?\">")
            h.append(hidden("csrf", csrf)); h.append(hidden("node", n.name))
            h.raw("<select name=\"image\" aria-label=\"next boot image\"><option value=\"\">next boot: as usual</option>")
            for image in d.images where !image.isEmpty {
                h.raw("<option"); if image == n.nextImage { h.raw(" selected") }; h.raw(">"); h.text(image); h.raw("</option>")
            }
            h.raw("</select> <button>Set next boot</button></form>")
            h.raw(" <form method=\"post\" action=\"/actions/node/reboot\" class=\"action\" data-confirm=\"Reboot ")
            h.text(n.name); h.raw(" now? Whatever runs on it stops.\">")
            h.append(hidden("csrf", csrf)); h.append(hidden("node", n.name)); h.raw("<button class=\"danger\">Reboot</button></form>")
            if n.bmc != nil {
                h.raw(" <form method=\"post\" action=\"/actions/node/reboot\" class=\"action\" data-confirm=\"Reset ")
                h.text(n.name); h.raw(" through its BMC now? It is not shut down first.\">")
                h.append(hidden("csrf", csrf)); h.append(hidden("node", n.name)); h.append(hidden("via", "ipmi"))
                h.raw("<button class=\"danger\">Reset (IPMI)</button></form>")
            }
            h.raw(" <form method=\"post\" action=\"/actions/node/remove\" class=\"action\" data-confirm=\"Remove ")
            h.text(n.name); h.raw(" from the inventory? Its lease and boot settings go with it.\">")
            h.append(hidden("csrf", csrf)); h.append(hidden("node", n.name)); h.raw("<button class=\"danger\">Remove node</button></form>")
        }

        h.raw("<h2>Performance</h2><nav class=\"ranges\">")
        for r in ranges {
            h.raw("<a href=\"?range=\(r.label)\"\(r.label == d.range ? " class=\"current\"" : "")>\(r.label)</a> ")
        }
        h.raw("</nav><div class=\"charts\" data-node=\""); h.text(d.name); h.raw("\" data-range=\""); h.text(d.range); h.raw("\">")
        for (series, title) in chartSeries {
            h.raw("<figure><figcaption>\(title)</figcaption><canvas data-series=\"\(series)\" width=\"560\" height=\"200\"></canvas></figure>")
        }
        h.raw("</div><noscript><p>The charts need JavaScript; <a href=\"/api/v1/nodes/\(HTML.component(d.name))/metrics?range=\(HTML.component(d.range))\">the same numbers as JSON</a>.</p></noscript>")

        h.raw("<h2>Checks</h2>")
        switch d.checks {
        case .failure(let e): h.append(unavailable(e))
        case .success(let cs) where cs.isEmpty: h.raw("<p>No checks on this node.</p>")
        case .success(let cs): h.append(checkTable(cs, now: d.now))
        }
        h.raw("<h2>Events</h2>")
        switch d.events {
        case .failure(let e): h.append(unavailable(e))
        case .success(let events): h.append(eventList(events))
        }
        return h
    }

    /// The node page's charts: cm-healthd's series names and what the chart says.
    public static let chartSeries: [(String, String)] = [
        ("cpu_percent", "CPU %"), ("mem_percent", "Memory %"), ("load1", "Load (1 min)"),
        ("net_rx_bytes_per_s,net_tx_bytes_per_s", "Network bytes/s (rx, tx)"),
        ("disk_read_bytes_per_s,disk_write_bytes_per_s", "Disk bytes/s (read, write)"), ("fs_used_percent", "Root filesystem used %"),
    ]

    // MARK: Checks

    public static func checks(_ answer: SuiteClient.Answer<[CheckStatus]>, state: HealthState?, now: Date) -> HTML {
        var h = HTML()
        h.raw("<h1>Health checks</h1><nav class=\"ranges\"><a href=\"/checks\"\(state == nil ? " class=\"current\"" : "")>all</a> ")
        for s in HealthState.allCases {
            h.raw("<a href=\"/checks?state=\(s.rawValue)\"\(state == s ? " class=\"current\"" : "")>\(s.rawValue)</a> ")
        }
        h.raw("</nav>")
        switch answer {
        case .failure(let e): h.append(unavailable(e))
        case .success(let all):
            let shown = all.filter { state == nil || $0.state == state }
            h.raw("<p class=\"count\">\(shown.count) of \(all.count) checks</p>")
            h.append(checkTable(Array(shown.prefix(2000)), now: now))
            if shown.count > 2000 { h.raw("<p>The first 2000 are shown; filter by state, or see <a href=\"/api/v1/checks\">the JSON</a>.</p>") }
        }
        return h
    }

    static func checkTable(_ checks: [CheckStatus], now: Date) -> HTML {
        var h = HTML()
        h.raw("<table class=\"checks\"><thead><tr><th>check</th><th>node</th><th>type</th><th>state</th><th>since</th><th>last probe</th></tr></thead><tbody>")
        for c in checks {
            h.raw("<tr class=\"\(c.state.rawValue)\" data-check=\""); h.text(c.id.description); h.raw("\"><td>"); h.text(c.id.check)
            h.raw("</td><td><a href=\"/nodes/\(HTML.component(c.id.node.rawValue))\">"); h.text(c.id.node.rawValue); h.raw("</a></td><td>")
            h.text("\(c.type) \(c.address)"); h.raw("</td><td class=\"state\">\(badge(c.state.rawValue))</td><td>"); h.text(Format.age(c.since, now: now))
            h.raw("</td><td>")
            if let p = c.lastProbe { h.text("\(p.ok ? "ok" : "failed") in \(String(format: "%.1f", p.latencyMs)) ms: \(p.message)") }
            h.raw("</td></tr>")
        }
        h.raw("</tbody></table>")
        return h
    }

    // MARK: Load balancer

    public static func lb(_ answer: SuiteClient.Answer<LbStatusReply>, csrf: String) -> HTML {
        var h = HTML()
        h.raw("<h1>Load balancer</h1>")
        let status: LbStatusReply
        switch answer {
        case .failure(let e): h.append(unavailable(e)); return h
        case .success(let s): status = s
        }
        h.raw("<h2>Frontends</h2><table class=\"frontends\"><thead><tr><th>name</th><th>listen</th><th>mode</th><th>backend</th><th>open</th>")
        h.raw("<th>requests/s</th><th>requests</th><th>errors</th><th>retries</th><th>full</th></tr></thead><tbody>")
        for f in status.frontends {
            h.raw("<tr><td>"); h.text(f.name); h.raw("</td><td>"); h.text(f.listen.description); h.raw("</td><td>"); h.text(f.mode)
            h.raw("</td><td>"); h.text(f.backend); h.raw("</td><td>\(f.active)</td><td>\(Format.rate(f.requestsPerSecond))</td><td>\(f.requests)</td>")
            h.raw("<td>\(f.errors)</td><td>\(f.retries)</td><td>\(f.full)</td></tr>")
        }
        h.raw("</tbody></table>")
        for b in status.backends {
            h.raw("<h2>Backend "); h.text(b.name); h.raw(" <small>"); h.text(b.algorithm); h.raw("</small></h2>")
            h.raw("<table class=\"servers\"><thead><tr><th>server</th><th>node</th><th>state</th><th>weight</th><th>open</th><th>total</th><th>failures</th><th></th></tr></thead><tbody>")
            for s in b.servers {
                h.raw("<tr class=\"\(s.state.rawValue)\" data-server=\""); h.text("\(b.name)/\(s.address)"); h.raw("\"><td>"); h.text(s.address.description)
                h.raw("</td><td>"); h.text(s.node); h.raw("</td><td class=\"state\">\(badge(s.state.rawValue))\(s.backup ? " backup" : "")</td>")
                h.raw("<td>\(s.weight)</td><td>\(s.active)</td><td>\(s.total)</td><td>\(s.failures)</td><td>")
                let drained = s.state == .drained
                h.raw("<form method=\"post\" action=\"/actions/drain\" class=\"action\" data-confirm=\"\(drained ? "Return" : "Drain") ")
                h.text(s.address.description); h.raw("\(drained ? " to" : " from") its pools?\"><input type=\"hidden\" name=\"csrf\" value=\"")
                h.text(csrf); h.raw("\"><input type=\"hidden\" name=\"target\" value=\""); h.text(s.address.description)
                h.raw("\"><input type=\"hidden\" name=\"next\" value=\"/lb\"><button name=\"drain\" value=\"\(drained ? "0" : "1")\">\(drained ? "Undrain" : "Drain")</button></form></td></tr>")
            }
            h.raw("</tbody></table>")
        }
        return h
    }

    // MARK: VIP and roles

    public static func vip(_ answer: SuiteClient.Answer<VipStatusReply>) -> HTML {
        var h = HTML()
        h.raw("<h1>VIP and roles</h1>")
        switch answer {
        case .failure(let e): h.append(unavailable(e))
        case .success(let v):
            h.raw("<p>This master is \(badge(v.role.rawValue)), epoch \(v.epoch)")
            if let r = v.roleInstance { h.raw(", following instance "); h.text(r) }
            h.raw(".</p><table class=\"vrrp\"><thead><tr><th>instance</th><th>interface</th><th>VRID</th><th>state</th><th>priority</th>")
            h.raw("<th>master</th><th>addresses</th><th>since</th><th>transitions</th><th>problem</th></tr></thead><tbody>")
            for i in v.instances {
                h.raw("<tr><td>"); h.text(i.name); h.raw("</td><td>"); h.text(i.interface); h.raw("</td><td>\(i.vrid)</td><td>\(badge(i.state.rawValue))</td>")
                h.raw("<td>\(i.priority)\(i.priority != i.configuredPriority ? " (configured \(i.configuredPriority))" : "")</td><td>")
                h.text(i.masterAddress?.description ?? "–"); h.raw("</td><td>"); h.text(i.addresses.map(\.description).joined(separator: ", "))
                h.raw("</td><td>"); h.text(Format.time(i.since)); h.raw("</td><td>\(i.transitions)</td><td>")
                h.text(([i.lastError].compactMap { $0 } + i.trackedDown.map { "\($0) down" } + [i.state == .backup ? i.preemptHeld.map { "preemption held: \($0)" } : nil].compactMap { $0 })
                    .joined(separator: "; ")); h.raw("</td></tr>")
            }
            h.raw("</tbody></table>")
        }
        return h
    }

    // MARK: Images

    /// cm-pxed's images and the nodes on each: booted it last (NAME or NAME@REV), set to it,
    /// or to boot it next. Builds and revisions are `cmctl image`'s (cmctl(8)).
    public static func images(_ answer: SuiteClient.Answer<[String]>, summary: NodeSummary) -> HTML {
        var h = HTML()
        h.raw("<h1>Images</h1>")
        let names: [String]
        switch answer {
        case .failure(let e): h.append(unavailable(e)); return h
        case .success(let n): names = n
        }
        guard !names.isEmpty else {
            h.raw("<p>No images yet: <code>cmctl image build NAME</code> makes one.</p>")
            return h
        }
        func base(_ ref: String?) -> String? { ref.map { String($0.split(separator: "@").first ?? "") } }
        let nodes = summary.nodesByName.values.sorted { $0.name < $1.name }
        h.raw("<table class=\"images\"><thead><tr><th>image</th><th>booted by</th><th>set on</th><th>next boot of</th></tr></thead><tbody>")
        for name in names {
            let booted = nodes.filter { base($0.lastImage) == name }, set = nodes.filter { base($0.image) == name }, next = nodes.filter { base($0.nextImage) == name }
            h.raw("<tr data-image=\""); h.text(name); h.raw("\"><td>"); h.text(name); h.raw("</td>")
            for list in [booted, set, next] {
                h.raw("<td>")
                for (i, n) in list.prefix(20).enumerated() {
                    if i > 0 { h.raw(", ") }
                    h.raw("<a href=\"/nodes/\(HTML.component(n.name))\">"); h.text(n.name); h.raw("</a>")
                }
                if list.count > 20 { h.raw(" and \(list.count - 20) more") }
                h.raw("</td>")
            }
            h.raw("</tr>")
        }
        h.raw("</tbody></table><p>Revisions, builds and differences: <code>cmctl image revisions NAME</code>, <code>cmctl image build</code>, <code>cmctl image diff</code>.</p>")
        return h
    }

    // MARK: Replication

    public static func replication(state: SuiteClient.Answer<StateStatusReply>, volume: SuiteClient.Answer<VolumeStatusReply>) -> HTML {
        var h = HTML()
        h.raw("<h1>Replication</h1><h2>Cluster filesystem</h2>")
        switch volume {
        case .failure(let e): h.append(unavailable(e))
        case .success(let v):
            h.raw("<p>Volume "); h.text("\(v.volume) (\(v.type), \(v.state)), mounted at \(v.mount): \(v.mounted ? "yes" : "no"), \(v.exports) exports")
            h.raw("</p><table><thead><tr><th>brick</th><th>online</th><th>heal pending</th><th>split brain</th></tr></thead><tbody>")
            for b in v.bricks {
                h.raw("<tr class=\"\(b.online ? "up" : "down")\"><td>"); h.text(b.brick); h.raw("</td><td>\(badge(b.online ? "up" : "down"))</td>")
                h.raw("<td>\(b.healPending.map(String.init) ?? "–")</td><td>\(b.splitBrain.map(String.init) ?? "–")</td></tr>")
            }
            h.raw("</tbody></table>")
            if let p = v.problem { h.raw("<p class=\"error\">"); h.text(p); h.raw("</p>") }
        }
        h.raw("<h2>State</h2>")
        switch state {
        case .failure(let e): h.append(unavailable(e))
        case .success(let s):
            h.raw("<p>Master "); h.text(s.master); h.raw(" is \(badge(s.role.rawValue)), epoch \(s.epoch)\(s.publishing ? ", publishing" : "").</p>")
            h.raw("<table><thead><tr><th>master</th><th>epoch</th><th>updated</th></tr></thead><tbody>")
            for r in s.replicas {
                h.raw("<tr><td>"); h.text(r.master); h.raw("</td><td>\(r.epoch)</td><td>"); h.text(Format.time(r.updated)); h.raw("</td></tr>")
            }
            h.raw("</tbody></table>")
            if !s.conflicts.isEmpty {
                h.raw("<p class=\"error\">\(s.conflicts.count) conflicting replica(s): see <code>cmctl master status</code>.</p>")
            }
            for p in [s.problem, s.configProblem].compactMap({ $0 }) { h.raw("<p class=\"error\">"); h.text(p); h.raw("</p>") }
        }
        return h
    }

    // MARK: Snapshots

    /// cm-snapd's data sets, newest snapshots first, and a form per data set to take one now.
    /// Restores and removals stay with root at the command line (cmctl snapshot restore).
    public static func snapshots(_ answer: SuiteClient.Answer<SnapshotListReply>, csrf: String) -> HTML {
        var h = HTML()
        h.raw("<h1>Snapshots</h1>")
        let list: SnapshotListReply
        switch answer {
        case .failure(let e): h.append(unavailable(e)); return h
        case .success(let l): list = l
        }
        h.raw("<p>Store "); h.text(list.store); h.raw("; timeline: ")
        h.text(list.nextTimeline.map { "next at \(Format.time($0))" } ?? "off"); h.raw(".</p>")
        for set in list.sets {
            h.raw("<section class=\"snapshots\" data-set=\""); h.text(set.name); h.raw("\"><h2>"); h.text(set.name)
            h.raw(" <small>"); h.text("\(set.kind): \(set.paths.joined(separator: ", "))"); h.raw("</small></h2>")
            if let p = set.problem { h.raw("<p class=\"error\">"); h.text(p); h.raw("</p>") } else if !set.backend.isEmpty {
                h.raw("<p class=\"muted\">"); h.text(set.backend); h.raw("</p>")
            }
            h.raw("<form method=\"post\" action=\"/actions/snapshot/create\" class=\"action\" data-confirm=\"Take a snapshot of ")
            h.text(set.name); h.raw(" now?\">"); h.append(hidden("csrf", csrf)); h.append(hidden("set", set.name))
            h.raw("<input name=\"note\" maxlength=\"200\" placeholder=\"note (why)\" aria-label=\"note\"> <button>Take snapshot</button></form>")
            if set.snapshots.isEmpty { h.raw("<p>No snapshots yet.</p></section>"); continue }
            h.raw("<table><thead><tr><th>id</th><th>kind</th><th>created</th><th>took</th><th>backend</th><th>note</th></tr></thead><tbody>")
            for s in set.snapshots.reversed().prefix(100) {
                h.raw("<tr data-id=\"\(s.id)\"><td>\(s.id)</td><td>"); h.text(s.kind.rawValue); h.raw("</td><td>"); h.text(Format.time(s.created))
                h.raw("</td><td>"); h.text(String(format: "%.2f s", s.seconds)); h.raw("</td><td>"); h.text(s.backend.rawValue); h.raw("</td><td>")
                h.text([s.pre.map { "post of \($0)" }, s.note].compactMap { $0 }.joined(separator: "; ")); h.raw("</td></tr>")
            }
            h.raw("</tbody></table>")
            if set.snapshots.count > 100 { h.raw("<p>and \(set.snapshots.count - 100) older: <code>cmctl snapshot list</code>.</p>") }
            h.raw("</section>")
        }
        h.raw("<p>Compare and restore as root: <code>cmctl snapshot diff ID</code>, <code>cmctl snapshot restore ID --yes</code> (cm-snapd(8)).</p>")
        return h
    }
}
