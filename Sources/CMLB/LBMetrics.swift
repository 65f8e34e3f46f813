import CMWire

/// cm-lbd's counters as Prometheus metrics (`cmctl lb metrics`, later cm-webd's `/metrics`):
/// what `cmctl lb status` shows, by frontend and by server, plus how the connections spread
/// over the event loops. Counters are the daemon's since it started; a reload keeps them
/// (frontends and servers are matched by name and address).
public enum LBMetrics {
    /// One event loop: its index, the CPU it is pinned to (nil: unpinned) and its connections.
    public struct Loop: Sendable, Equatable {
        public var index: Int
        public var cpu: Int?
        public var connections: Int
        public init(index: Int, cpu: Int?, connections: Int) {
            self.index = index
            self.cpu = cpu
            self.connections = connections
        }
    }

    public static func render(_ status: LbStatusReply, loops: [Loop]) -> String {
        var out = PrometheusText()
        let frontends = status.frontends
        func byFrontend(_ value: (LbFrontendStatus) -> Int) -> [PrometheusText.Sample] {
            frontends.map { f in PrometheusText.Sample([("frontend", f.name), ("mode", f.mode), ("backend", f.backend)], value(f)) }
        }
        out.family("cm_lbd_frontend_connections", .gauge, help: "Client connections open now.", byFrontend(\.active))
        out.family("cm_lbd_frontend_connections_total", .counter, help: "Client connections accepted.", byFrontend(\.total))
        out.family("cm_lbd_frontend_requests_total", .counter,
                   help: "HTTP requests (TCP frontends: connections) taken from clients.", byFrontend(\.requests))
        out.family("cm_lbd_frontend_errors_total", .counter,
                   help: "Clients that got an error of cm-lbd's own (TCP: closed without a server; HTTP: 4xx/5xx).", byFrontend(\.errors))
        out.family("cm_lbd_frontend_retries_total", .counter,
                   help: "Connects and idempotent requests that failed and went to another server unseen by the client.", byFrontend(\.retries))
        out.family("cm_lbd_frontend_request_timeouts_total", .counter,
                   help: "HTTP requests whose line and headers were not complete within http_request_timeout (408, or a close when nothing came).",
                   byFrontend(\.requestTimeouts))
        out.family("cm_lbd_frontend_max_connections", .gauge,
                   help: "The frontend's max_connections, 0 for none of its own (only the global one).", byFrontend(\.maxConnections))
        out.family("cm_lbd_frontend_full_total", .counter,
                   help: "Times the frontend reached its max_connections and stopped accepting (clients waited in the listen queue).",
                   byFrontend(\.full))

        let servers = status.backends.flatMap { b in b.servers.map { (backend: b.name, server: $0) } }
        func byServer(_ value: (LbServerStatus) -> Int) -> [PrometheusText.Sample] {
            servers.map { PrometheusText.Sample(serverLabels($0.backend, $0.server), value($0.server)) }
        }
        out.family("cm_lbd_server_up", .gauge, help: "1 when the server takes new connections, else 0 (see cm_lbd_server_state).",
                   byServer { $0.state == .up ? 1 : 0 })
        out.family("cm_lbd_server_state", .gauge, help: "1 for the server's state (up, down, failed, drained, full), 0 for the others.",
                   servers.flatMap { s in
                       LbServerState.allCases.map { state in
                           PrometheusText.Sample(serverLabels(s.backend, s.server) + [("state", state.rawValue)], s.server.state == state ? 1 : 0)
                       }
                   })
        out.family("cm_lbd_server_weight", .gauge, help: "The server's weight in its pool.", byServer(\.weight))
        out.family("cm_lbd_server_backup", .gauge, help: "1 for a backup server (used only when no other is).", byServer { $0.backup ? 1 : 0 })
        out.family("cm_lbd_server_max_connections", .gauge, help: "The server's max_connections, 0 for no limit.", byServer(\.maxConnections))
        out.family("cm_lbd_server_connections", .gauge, help: "Connections to the server open now.", byServer(\.active))
        out.family("cm_lbd_server_connections_total", .counter, help: "Connections given to the server.", byServer(\.total))
        out.family("cm_lbd_server_failures_total", .counter,
                   help: "Failed connects to the server (each took it out of the pool for fail_backoff).", byServer(\.failures))

        out.family("cm_lbd_loop_connections", .gauge, help: "Client connections each event loop owns.",
                   loops.map { PrometheusText.Sample([("loop", String($0.index)), ("cpu", $0.cpu.map(String.init) ?? "")], $0.connections) })
        return out.text
    }

    private static func serverLabels(_ backend: String, _ server: LbServerStatus) -> [(name: String, value: String)] {
        [("backend", backend), ("server", server.address.description), ("node", server.node)]
    }
}
