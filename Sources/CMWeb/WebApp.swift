import CMAuth
import CMConfig
import CMConsole
import CMTypes
import CMWire
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The console: its routes, the login and session middleware, and the handlers that turn the
/// daemons' answers into pages, JSON and metrics. Everything an admin does here goes through
/// the daemon that owns it, over CMWire, and is logged with the acting user.
public final class WebApp: Sendable {
    public let suite: SuiteClient
    public let sessions: SessionStore
    public let throttle: LoginThrottle
    public let relay: EventRelay
    let users: Mutex<UsersFile>
    let settings: Mutex<WebdConfig>
    public let cluster: String
    let chartJS: String
    let logger: Logger
    /// The node list's rendered table per query and node summary.
    let nodeTables = RenderCache()

    public static let cookie = "cm_session"

    public init(config: WebdConfig, users: UsersFile, suite: SuiteClient, cluster: String, logger: Logger, chartJS: String = Assets.chartJSPath) {
        self.suite = suite
        self.sessions = SessionStore(lifetime: config.auth.sessionLifetime, idle: config.auth.sessionIdle, capacity: config.auth.maxSessions)
        self.throttle = LoginThrottle(attempts: config.auth.loginAttempts, window: config.auth.loginWindow)
        self.relay = EventRelay(suite: suite, logger: logger)
        self.users = Mutex(users)
        self.settings = Mutex(config)
        self.cluster = cluster
        self.chartJS = chartJS
        self.logger = logger
    }

    /// SIGHUP: a new users file takes effect for the next login; sessions stay.
    public func apply(config: WebdConfig, users: UsersFile) {
        self.users.withLock { $0 = users }
        self.settings.withLock { $0 = config }
    }

    var config: WebdConfig { settings.withLock { $0 } }

    public func router() -> Router<WebContext> {
        let router = Router(context: WebContext.self)
        router.middlewares.add(SecurityHeaders(tls: config.tlsEnabled))
        router.middlewares.add(SessionMiddleware(app: self))

        router.get("/static/:name") { _, context -> Response in
            guard let name = context.parameters.get("name"), let file = Assets.file(name, chartJS: self.chartJS) else {
                throw HTTPError(.notFound, message: "no such file")
            }
            return Response(status: .ok, headers: [.contentType: file.type, .cacheControl: "max-age=3600"], body: .init(byteBuffer: ByteBuffer(data: file.body)))
        }
        router.get("/login") { request, context -> Response in
            if context.session != nil { return .redirect(to: "/", type: .found) }
            return Self.html(Views.login(cluster: self.cluster, message: nil, next: Form.safeNext(request.uri.queryParameters.get("next"))))
        }
        router.post("/login") { request, context in try await self.login(request, context: context) }
        router.post("/logout") { _, context -> Response in
            if let token = context.token { self.sessions.close(token) }
            if let user = context.session?.user { self.logger.notice("\(user) logged out", metadata: ["user": .string(user)]) }
            var response = Response.redirect(to: "/login", type: .found)
            response.headers[values: .setCookie] = [Self.clearCookie(tls: self.config.tlsEnabled)]
            return response
        }
        router.get("/metrics") { _, _ in try await self.metrics() }

        router.get("/") { _, context in try await self.overview(context) }
        router.get("/nodes") { request, context in try await self.nodesPage(request, context) }
        router.get("/nodes/:name") { request, context in try await self.nodePage(request, context) }
        router.get("/checks") { request, context -> Response in
            let state = request.uri.queryParameters.get("state").flatMap(HealthState.init(rawValue:))
            return Self.html(Views.page("Health checks", path: "/checks", chrome: self.chrome(context), live: [Topic.health],
                                        body: Views.checks(await self.suite.checks(), state: state, now: Date())))
        }
        router.get("/lb") { _, context -> Response in
            Self.html(Views.page("Load balancer", path: "/lb", chrome: self.chrome(context), live: [Topic.lb],
                                 body: Views.lb(await self.suite.lb(), csrf: context.session?.csrf ?? "")))
        }
        router.get("/vip") { _, context -> Response in
            Self.html(Views.page("VIP and roles", path: "/vip", chrome: self.chrome(context), live: [Topic.vip], body: Views.vip(await self.suite.vip())))
        }
        router.get("/images") { _, context -> Response in
            async let images = self.suite.images(), summary = self.suite.summary()
            return Self.html(Views.page("Images", path: "/images", chrome: self.chrome(context), live: [Topic.node],
                                        body: Views.images(await images, summary: await summary)))
        }
        router.get("/replication") { _, context -> Response in
            async let state = self.suite.state(), volume = self.suite.volume()
            return Self.html(Views.page("Replication", path: "/replication", chrome: self.chrome(context),
                                        body: Views.replication(state: await state, volume: await volume)))
        }
        router.get("/snapshots") { _, context -> Response in
            Self.html(Views.page("Snapshots", path: "/snapshots", chrome: self.chrome(context), live: [Topic.snapshot],
                                 body: Views.snapshots(await self.suite.snapshots(), csrf: context.session?.csrf ?? "")))
        }
        router.post("/actions/snapshot/create") { request, context in try await self.snapshotForm(request, context) }
        router.post("/actions/drain") { request, context in try await self.drainForm(request, context) }
        router.post("/actions/node/next-boot") { request, context in try await self.nextBootForm(request, context) }
        router.post("/actions/node/add") { request, context in try await self.addNodeForm(request, context) }
        router.post("/actions/node/remove") { request, context in try await self.removeNodeForm(request, context) }
        router.post("/actions/node/reboot") { request, context in try await self.rebootNodeForm(request, context) }
        router.get("/events") { request, _ in self.events(request) }

        let api = router.group("/api/v1")
        api.get("/status") { _, _ in
            try Self.json(await self.suite.statuses().map { DaemonAnswer(daemon: $0.daemon.name, status: $0.answer.value, error: $0.answer.failure) })
        }
        api.get("/nodes") { _, _ in try Self.json(await self.suite.nodes()) }
        api.get("/nodes/:name") { _, context in try Self.json(await self.suite.node(context.parameters.get("name") ?? "")) }
        api.get("/nodes/:name/metrics") { request, context in try await self.nodeMetrics(request, context) }
        api.post("/nodes") { request, context in
            let spec = try await request.decode(as: NodeSpec.self, context: context)
            return try Self.json(await self.nodeAction(context, "added node \(spec.name ?? spec.mac.description)") { await self.suite.addNode(spec) })
        }
        api.delete("/nodes/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            return try Self.json(await self.nodeAction(context, "removed node \(name)") { await self.suite.removeNode(name) })
        }
        api.post("/nodes/:name/next-boot") { request, context in
            let name = context.parameters.get("name") ?? "", body = try await request.decode(as: NextBoot.self, context: context)
            return try Self.json(await self.nodeAction(context, "set \(name)'s next boot to \(body.image.isEmpty ? "its usual image" : body.image)") {
                await self.suite.setNode(NodeSetRequest(node: name, nextImage: body.image))
            })
        }
        api.post("/nodes/:name/reboot") { request, context in
            let name = context.parameters.get("name") ?? ""
            let method = try Self.rebootMethod(request.uri.queryParameters.get("via").map { String($0) })
            return try Self.json(await self.nodeAction(context, "rebooted node \(name)\(method.map { " (\($0.rawValue))" } ?? "")") {
                await self.suite.rebootNode(name, via: method, by: context.session?.user)
            })
        }
        api.get("/checks") { _, _ in try Self.json(await self.suite.checks()) }
        api.get("/events") { request, _ in
            let limit = max(1, min(1000, Int(request.uri.queryParameters.get("limit") ?? "50") ?? 50))
            return try Self.json(await self.suite.history(limit: limit))
        }
        api.get("/lb") { _, _ in try Self.json(await self.suite.lb()) }
        api.post("/lb/drain") { request, context in
            let body = try await request.decode(as: LbDrainRequest.self, context: context)
            let answer = await self.suite.drain(body.target, drain: body.drain)
            self.suite.cache?.invalidate(prefix: "lbd.")
            self.logAction(context, "\(body.drain ? "drained" : "undrained") \(body.target)", answer)
            return try Self.json(answer)
        }
        api.get("/vip") { _, _ in try Self.json(await self.suite.vip()) }
        api.get("/pxe") { _, _ in try Self.json(await self.suite.pxe()) }
        api.get("/state") { _, _ in try Self.json(await self.suite.state()) }
        api.get("/volume") { _, _ in try Self.json(await self.suite.volume()) }
        api.get("/snapshots") { _, _ in try Self.json(await self.suite.snapshots()) }
        api.post("/snapshots") { request, context in
            let body = try await request.decode(as: SnapshotCreateRequest.self, context: context)
            let answer = await self.suite.createSnapshot(body.dataSet, note: body.note, by: context.session?.user)
            self.logAction(context, "took a snapshot of \(body.dataSet)", answer)
            return try Self.json(answer)
        }
        return router
    }

    // MARK: Login

    func login(_ request: Request, context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        let next = Form.safeNext(form["next"])
        if let wait = throttle.retryAfter(context.client) {
            logger.warning("login refused: too many failures from \(context.client)", metadata: ["client": .string(context.client)])
            var response = Self.html(Views.login(cluster: cluster, message: "Too many failed logins from your address; try again in \(wait) s.", next: next),
                                     status: .tooManyRequests)
            response.headers[.retryAfter] = String(wait)
            return response
        }
        let user = form["user"] ?? "", password = form["password"] ?? ""
        let users = self.users.withLock { $0 }, auth = config.auth
        // bcrypt takes tens of milliseconds and PAM up to seconds by design: not on an event loop.
        let (ok, why) = try await NIOThreadPool.singleton.runIfActive { () -> (Bool, String) in
            if users.hashes[user] != nil || !auth.pam { return (users.verify(user: user, password: password), "wrong password or unknown user") }
            switch SystemLogin(service: auth.pamService, group: auth.pamGroup).check(user: user, password: password) {
            case .accepted: return (true, "")
            case .refused(let reason): return (false, "PAM: \(reason)")
            case .notInGroup: return (false, "not a member of group \(auth.pamGroup)")
            }
        }
        guard ok, UsersFile.isUserName(user) else {
            throttle.failed(context.client)
            logger.warning("failed login for \"\(Self.printable(user.prefix(32)))\" from \(context.client): \(why)", metadata: ["client": .string(context.client)])
            // 200 with the form again, as a browser expects of a form (401 would need an HTTP
            // authentication scheme the page does not use).
            return Self.html(Views.login(cluster: cluster, message: "Wrong user name or password.", next: next))
        }
        // A new login gets a new token; the browser's previous session, if any, ends.
        if let old = context.token { sessions.close(old) }
        let (token, _) = sessions.open(user: user)
        logger.notice("\(user) logged in from \(context.client)", metadata: ["user": .string(user), "client": .string(context.client)])
        var response = Response.redirect(to: next, type: .found)
        response.headers[values: .setCookie] = [Self.sessionCookie(token, tls: config.tlsEnabled, maxAge: Int(config.auth.sessionLifetime.seconds))]
        return response
    }

    static func sessionCookie(_ token: String, tls: Bool, maxAge: Int) -> String {
        "\(cookie)=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict\(tls ? "; Secure" : "")"
    }

    static func clearCookie(tls: Bool) -> String {
        "\(cookie)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict\(tls ? "; Secure" : "")"
    }

    func chrome(_ context: WebContext) -> Views.Chrome {
        Views.Chrome(user: context.session?.user ?? "", csrf: context.session?.csrf ?? "", cluster: cluster)
    }

    // MARK: Pages

    func overview(_ context: WebContext) async throws -> Response {
        // One after the other: each is nearly always a cached answer, and five child tasks a
        // request cost more than they save.
        let o = Views.Overview(statuses: await suite.statuses(), vip: await suite.vip(), summary: await suite.summary(), lb: await suite.lb(),
                               events: await suite.history(limit: 15), now: Date())
        return Self.html(Views.page("Overview", path: "/", chrome: chrome(context), live: [Topic.health, Topic.node, Topic.vip, Topic.lb], body: Views.overview(o)))
    }

    func nodesPage(_ request: Request, _ context: WebContext) async throws -> Response {
        let query = NodeQuery(query: Self.query(request))
        let summary = await suite.summary()
        let table = nodeTables.get(query.key, version: summary.id) { Views.nodesTable(summary.listable, query: query) }
        return Self.html(Views.page("Nodes", path: "/nodes", chrome: chrome(context), live: [Topic.health, Topic.node],
                                    body: Views.nodes(table: table, query: query, csrf: context.session?.csrf ?? "")))
    }

    func nodePage(_ request: Request, _ context: WebContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        guard NodeName.isValid(name) else { throw HTTPError(.notFound, message: "no such node") }
        let range = Views.ranges.first { $0.label == request.uri.queryParameters.get("range") }?.label ?? "1h"
        async let summary = suite.summary(), events = suite.history(limit: 200), nodeChecks = suite.checks(node: NodeName(name))
        let s = await summary
        let info: SuiteClient.Answer<NodeInfo> = s.nodesByName[name].map { .success($0) }
            ?? .failure(s.nodesProblem ?? WireError(.notFound, "no node \(name)"))
        let checks = await nodeChecks
        let mine = (await events).map { $0.filter { $0.id.node.rawValue == name }.prefix(20).map { $0 } }
        let d = Views.NodeDetail(name: name, info: info, checks: checks, events: mine, range: range, now: Date(),
                                 images: (await suite.images()).value ?? [])
        return Self.html(Views.page("Node \(name)", path: "/nodes/\(name)", chrome: chrome(context), live: [Topic.health], scripts: ["/static/chart.min.js"],
                                    body: Views.node(d, csrf: context.session?.csrf ?? "")))
    }

    func nodeMetrics(_ request: Request, _ context: WebContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        guard NodeName.isValid(name) else { throw HTTPError(.notFound, message: "no such node") }
        let seconds = Views.ranges.first { $0.label == request.uri.queryParameters.get("range") }?.seconds ?? 3600
        let series = request.uri.queryParameters.get("series").map { $0.split(separator: ",").prefix(16).map(String.init) }
        return try Self.json(await suite.metrics(node: NodeName(name), lastSeconds: seconds, series: series))
    }

    // MARK: Actions

    func drainForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let target = form["target"], !target.isEmpty, target.count <= 128 else { throw HTTPError(.badRequest, message: "no target") }
        let drain = form["drain"] != "0"
        let answer = await suite.drain(target, drain: drain)
        suite.cache?.invalidate(prefix: "lbd.")
        logAction(context, "\(drain ? "drained" : "undrained") \(target)", answer)
        return try formResult(answer, next: Form.safeNext(form["next"]))
    }

    /// A change to the inventory: done by cm-pxed, logged with the user, and the cached lists
    /// forgotten so that the next page shows it.
    func nodeAction<T>(_ context: WebContext, _ what: String, _ body: () async -> SuiteClient.Answer<T>) async -> SuiteClient.Answer<T> {
        let answer = await body()
        suite.cache?.invalidate(prefix: "pxed.")
        suite.cache?.invalidate(prefix: "rows")
        logAction(context, what, answer)
        return answer
    }

    /// A form's action: back to `next` when done, else the daemon's reason as the page.
    func formResult<T>(_ answer: SuiteClient.Answer<T>, next: String) throws -> Response {
        if case .failure(let e) = answer { throw HTTPError(Self.status(of: e), message: e.message) }
        return .redirect(to: next, type: .found)
    }

    /// The HTTP status of a daemon's error: whose fault it was.
    static func status(of error: WireError) -> HTTPResponse.Status {
        switch error.code {
        case .notFound: .notFound
        case .invalidArgument: .badRequest
        case .conflict: .conflict
        case .notRunning, .unavailable: .serviceUnavailable
        default: .badGateway
        }
    }

    func snapshotForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let set = form["set"], SnapdConfig.isDataSetName(set) else { throw HTTPError(.badRequest, message: "no data set") }
        let note = (form["note"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard note.count <= 200 else { throw HTTPError(.badRequest, message: "note: at most 200 characters") }
        let answer = await suite.createSnapshot(set, note: note.isEmpty ? nil : note, by: context.session?.user)
        logAction(context, "took a snapshot of \(set)", answer)
        return try formResult(answer, next: "/snapshots")
    }

    func nextBootForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let node = form["node"], NodeName.isValid(node) else { throw HTTPError(.badRequest, message: "no node") }
        let image = form["image"] ?? ""
        guard image.count <= 128 else { throw HTTPError(.badRequest, message: "image name too long") }
        let answer = await nodeAction(context, "set \(node)'s next boot to \(image.isEmpty ? "its usual image" : image)") {
            await suite.setNode(NodeSetRequest(node: node, nextImage: image))
        }
        return try formResult(answer, next: "/nodes/\(node)")
    }

    func addNodeForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let mac = form["mac"].flatMap({ MACAddress($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw HTTPError(.badRequest, message: "mac: not a MAC address (52:54:00:12:34:56)")
        }
        func field(_ key: String) -> String? {
            let v = (form[key] ?? "").trimmingCharacters(in: .whitespaces)
            return v.isEmpty ? nil : v
        }
        var address: IPv4Address?
        if let text = field("address") {
            guard let a = IPv4Address(text) else { throw HTTPError(.badRequest, message: "address: \"\(text.prefix(40))\" is not an IPv4 address") }
            address = a
        }
        let spec = NodeSpec(name: field("name"), mac: mac, address: address, group: field("group"))
        let answer = await nodeAction(context, "added node \(spec.name ?? mac.description)") { await suite.addNode(spec) }
        return try formResult(answer, next: answer.value.map { "/nodes/\($0.name)" } ?? "/nodes")
    }

    func removeNodeForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let node = form["node"], NodeName.isValid(node) else { throw HTTPError(.badRequest, message: "no node") }
        let answer = await nodeAction(context, "removed node \(node)") { await suite.removeNode(node) }
        return try formResult(answer, next: "/nodes")
    }

    func rebootNodeForm(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Form.read(request, limit: config.http.maxBodyBytes)
        guard let node = form["node"], NodeName.isValid(node) else { throw HTTPError(.badRequest, message: "no node") }
        let method = try Self.rebootMethod(form["via"])
        let answer = await nodeAction(context, "rebooted node \(node)\(method.map { " (\($0.rawValue))" } ?? "")") {
            await suite.rebootNode(node, via: method, by: context.session?.user)
        }
        return try formResult(answer, next: "/nodes/\(node)")
    }

    /// `via=ssh|ipmi` of a reboot; absent or empty: cm-pxed's choice.
    static func rebootMethod(_ text: String?) throws -> RebootMethod? {
        guard let text, !text.isEmpty else { return nil }
        guard let m = RebootMethod(rawValue: text) else { throw HTTPError(.badRequest, message: "via: ssh or ipmi") }
        return m
    }

    /// Text from a request as the log shows it: control characters escaped, so that a value
    /// cannot forge a log line of its own.
    static func printable(_ s: some StringProtocol) -> String {
        String(s).unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }

    func logAction<T>(_ context: WebContext, _ what: String, _ answer: SuiteClient.Answer<T>) {
        let user = context.session?.user ?? "?", what = Self.printable(what)
        switch answer {
        case .success: logger.notice("\(user) \(what)", metadata: ["user": .string(user), "client": .string(context.client)])
        case .failure(let e): logger.error("\(user) \(what) failed: \(e.message)", metadata: ["user": .string(user), "client": .string(context.client)])
        }
    }

    // MARK: Responses

    static func html(_ h: HTML, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: h.text)))
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    /// A daemon's answer as JSON: the value, or its error with a status that says whose fault.
    static func json<T: Encodable>(_ answer: SuiteClient.Answer<T>) throws -> Response {
        switch answer {
        case .success(let value): return try json(value)
        case .failure(let e): return try json(e, status: status(of: e))
        }
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }

    static func query(_ request: Request) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in request.uri.queryParameters where out[String(k)] == nil { out[String(k)] = String(v) }
        return out
    }
}

struct NextBoot: Decodable {
    /// An image name, NAME@REV, or "" for the node's usual one.
    var image: String
}

struct DaemonAnswer: Encodable {
    var daemon: String
    var status: DaemonStatus?
    var error: WireError?
}

extension Form {
    /// An application/x-www-form-urlencoded body, read with a cap.
    static func read(_ request: Request, limit: Int) async throws -> [String: String] {
        var request = request
        return parse(String(buffer: try await collect(&request, limit: limit)))
    }

    /// The request's body, up to `limit` bytes (413 beyond), kept in the request so that a later
    /// reader (the handler after the middleware) gets it again.
    static func collect(_ request: inout Request, limit: Int) async throws -> ByteBuffer {
        do { return try await request.collectBody(upTo: limit) } catch {
            throw HTTPError(.contentTooLarge, message: "the request body is larger than \(limit) bytes")
        }
    }
}
