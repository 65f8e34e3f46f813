import CMConsole
import Foundation
import Hummingbird
import NIOCore

extension WebApp {
    func metrics() async throws -> Response {
        async let statuses = suite.statuses(), checks = suite.checks(), vip = suite.vip(), pxe = suite.pxe(), state = suite.state(), lb = suite.lbMetrics(),
                  nodes = suite.latestNodeMetrics()
        let text = SuiteMetrics.render(.init(statuses: await statuses, checks: await checks, vip: await vip, pxe: await pxe, state: await state, lb: await lb,
                                             nodes: await nodes))
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
