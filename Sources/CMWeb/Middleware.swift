import CMConsole
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Headers on every answer: nothing of the console may be framed, sniffed, cached by a proxy or
/// run scripts from elsewhere (its own JavaScript and Debian's Chart.js are served from here).
struct SecurityHeaders: RouterMiddleware {
    typealias Context = WebContext
    let tls: Bool

    static let policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

    static let frameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!

    func handle(_ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            // Errors get the same headers, and a plain text body that names the problem.
            response = Response(status: error.status, headers: error.headers,
                                body: .init(byteBuffer: ByteBuffer(string: (error.body ?? error.status.reasonPhrase) + "\n")))
            response.headers[.contentType] = "text/plain; charset=utf-8"
        }
        response.headers[.contentSecurityPolicy] = Self.policy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[Self.frameOptions] = "DENY"
        response.headers[Self.referrerPolicy] = "same-origin"
        if tls { response.headers[.strictTransportSecurity] = "max-age=31536000" }
        return response
    }
}

/// Finds the request's session (the cookie), keeps everything but the login page, the static
/// files and (when webd.toml allows) /metrics away from requests without one, and refuses a
/// state-changing request that lacks the session's CSRF token or comes from another site.
struct SessionMiddleware: RouterMiddleware {
    typealias Context = WebContext
    let app: WebApp

    static let fetchSite = HTTPField.Name("Sec-Fetch-Site")!
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!

    func handle(_ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response) async throws -> Response {
        var context = context, request = request
        if let token = request.cookies[WebApp.cookie]?.value, let session = app.sessions.session(token) {
            context.session = session
            context.token = token
        }
        let path = request.uri.path
        let open = path.hasPrefix("/static/") || path == "/login" || (path == "/metrics" && app.config.auth.publicMetrics)
        if context.session == nil, !open {
            if request.method == .get, !path.hasPrefix("/api/"), path != "/events", path != "/metrics" {
                return .redirect(to: "/login?next=\(HTML.component(Form.safeNext(request.uri.description)))", type: .found)
            }
            throw HTTPError(.unauthorized, message: "log in first (POST /login)")
        }
        if request.method != .get, request.method != .head {
            if let site = request.headers[Self.fetchSite], site == "cross-site" || site == "same-site" {
                throw HTTPError(.forbidden, message: "a request from another site is refused")
            }
            if let origin = request.headers[.origin], !Self.sameOrigin(origin, authority: request.head.authority) {
                throw HTTPError(.forbidden, message: "a request from another origin is refused")
            }
            if path != "/login" {
                guard let session = context.session else { throw HTTPError(.unauthorized, message: "log in first") }
                var token = request.headers[Self.csrfHeader]
                if token == nil, request.headers[.contentType]?.hasPrefix("application/x-www-form-urlencoded") == true {
                    let body = try await Form.collect(&request, limit: app.config.http.maxBodyBytes)
                    token = Form.parse(String(buffer: body))["csrf"]
                }
                guard let token, SessionStore.same(token, session.csrf) else {
                    throw HTTPError(.forbidden, message: "missing or wrong CSRF token: reload the page and try again")
                }
            }
        }
        return try await next(request, context)
    }

    /// Whether a browser's Origin names this site: the same host and port as the request's
    /// Host (another service on another port of the master is another origin). "null" is not.
    static func sameOrigin(_ origin: String, authority: String?) -> Bool {
        guard let authority, origin != "null", let url = URL(string: origin), let host = url.host, !host.isEmpty else { return false }
        func normal(_ s: String) -> String {
            let lower = s.lowercased()
            for suffix in [":443", ":80"] where lower.hasSuffix(suffix) { return String(lower.dropLast(suffix.count)) }
            return lower
        }
        let originAuthority = (host.contains(":") ? "[\(host)]" : host) + (url.port.map { ":\($0)" } ?? "")
        return normal(originAuthority) == normal(authority)
    }

}
