import CMTypes
import CMWire
import Foundation

/// /metrics for the whole suite, so that one scrape job in an existing Prometheus sees it all:
/// cm-lbd's own exposition as it gives it, and the other daemons' state turned into families
/// here. A daemon that is down shows as `clustermaker_daemon_up{daemon="…"} 0`.
public enum SuiteMetrics {
    public struct Inputs {
        public var statuses: [(daemon: SuiteDaemon, answer: SuiteClient.Answer<DaemonStatus>)]
        public var checks: SuiteClient.Answer<[CheckStatus]>
        public var vip: SuiteClient.Answer<VipStatusReply>
        public var pxe: SuiteClient.Answer<PxeStatusReply>
        public var state: SuiteClient.Answer<StateStatusReply>
        public var lb: SuiteClient.Answer<String>
        /// cm-healthd's newest scrape of each node's exporter.
        public var nodes: SuiteClient.Answer<NodeMetricsLatestReply>
        public init(statuses: [(daemon: SuiteDaemon, answer: SuiteClient.Answer<DaemonStatus>)], checks: SuiteClient.Answer<[CheckStatus]>,
                    vip: SuiteClient.Answer<VipStatusReply>, pxe: SuiteClient.Answer<PxeStatusReply>, state: SuiteClient.Answer<StateStatusReply>,
                    lb: SuiteClient.Answer<String>, nodes: SuiteClient.Answer<NodeMetricsLatestReply> = .success(NodeMetricsLatestReply(nodes: []))) {
            self.statuses = statuses
            self.checks = checks
            self.vip = vip
            self.pxe = pxe
            self.state = state
            self.lb = lb
            self.nodes = nodes
        }
    }

    /// The nodes' series as /metrics names them (cm-healthd's series name → family, help).
    static let nodeFamilies: [(series: String, family: String, help: String)] = [
        ("cpu_percent", "clustermaker_node_cpu_percent", "CPU busy, percent, between the node's last two scrapes."),
        ("mem_percent", "clustermaker_node_memory_used_percent", "Memory in use (total less available), percent."),
        ("mem_used_bytes", "clustermaker_node_memory_used_bytes", "Memory in use (total less available)."),
        ("mem_total_bytes", "clustermaker_node_memory_total_bytes", "Memory installed."),
        ("load1", "clustermaker_node_load1", "Load average over 1 minute."),
        ("load5", "clustermaker_node_load5", "Load average over 5 minutes."),
        ("load15", "clustermaker_node_load15", "Load average over 15 minutes."),
        ("net_rx_bytes_per_s", "clustermaker_node_network_receive_bytes_per_second", "Bytes received a second on every interface but lo."),
        ("net_tx_bytes_per_s", "clustermaker_node_network_transmit_bytes_per_second", "Bytes sent a second on every interface but lo."),
        ("disk_read_bytes_per_s", "clustermaker_node_disk_read_bytes_per_second", "Bytes read a second from every disk."),
        ("disk_write_bytes_per_s", "clustermaker_node_disk_written_bytes_per_second", "Bytes written a second to every disk."),
        ("fs_used_percent", "clustermaker_node_root_filesystem_used_percent", "The root filesystem's use, percent."),
    ]

    public static func render(_ i: Inputs) -> String {
        var p = PrometheusText()
        p.family("clustermaker_daemon_up", .gauge, help: "1 when the daemon answers on its control socket.",
                 i.statuses.map { .init([("daemon", $0.daemon.name)], $0.answer.value == nil ? 0 : 1) })
        if let checks = i.checks.value {
            p.family("clustermaker_checks", .gauge, help: "Health checks by state.",
                     HealthState.allCases.map { s in .init([("state", s.rawValue)], checks.filter { $0.state == s }.count) })
            p.family("clustermaker_check_up", .gauge, help: "1 when the check is up, 0 when down; unknown checks are left out.",
                     checks.filter { $0.state != .unknown }.map {
                         .init([("check", $0.id.check), ("node", $0.id.node.rawValue), ("type", $0.type)], $0.state == .up ? 1 : 0)
                     })
        }
        if let vip = i.vip.value {
            p.family("clustermaker_master_active", .gauge, help: "1 when this master is the active one.", [.init([], vip.role == .active ? 1 : 0)])
            p.family("clustermaker_master_epoch", .gauge, help: "The role's epoch: rises on every change of role.", [.init([], Double(vip.epoch.rawValue))])
            p.family("clustermaker_vrrp_master", .gauge, help: "1 when this host is the VRRP instance's master.",
                     vip.instances.map { .init([("instance", $0.name)], $0.state == .master ? 1 : 0) })
            p.family("clustermaker_vrrp_transitions_total", .counter, help: "VRRP state changes since cm-vipd started.",
                     vip.instances.map { .init([("instance", $0.name)], $0.transitions) })
            p.family("clustermaker_vrrp_adverts_sent_total", .counter, help: "VRRP advertisements sent.",
                     vip.instances.map { .init([("instance", $0.name)], $0.advertsSent) })
            p.family("clustermaker_vrrp_adverts_received_total", .counter, help: "VRRP advertisements received.",
                     vip.instances.map { .init([("instance", $0.name)], $0.advertsReceived) })
        }
        if let pxe = i.pxe.value {
            p.family("clustermaker_nodes", .gauge, help: "Nodes in cm-pxed's inventory.", [.init([], pxe.nodes)])
            p.family("clustermaker_leases", .gauge, help: "DHCP leases held.", [.init([], pxe.leases)])
            p.family("clustermaker_pxe_events_total", .counter, help: "cm-pxed's counters (DHCP, TFTP, HTTP boot) since it started.",
                     pxe.counters.sorted { $0.key < $1.key }.map { .init([("counter", $0.key)], $0.value) })
        }
        if let state = i.state.value {
            p.family("clustermaker_state_publishing", .gauge, help: "1 when this master's databases are being replicated to the volume.",
                     [.init([], state.publishing ? 1 : 0)])
            p.family("clustermaker_state_conflicts", .gauge, help: "Replicas written by a master while a newer epoch was active.",
                     [.init([], state.conflicts.count)])
        }
        if let nodes = i.nodes.value?.nodes, !nodes.isEmpty {
            p.family("clustermaker_node_scrape_up", .gauge, help: "1 when cm-healthd's last scrape of the node's exporter succeeded.",
                     nodes.map { .init([("node", $0.node.rawValue)], $0.at != nil && $0.error == nil ? 1 : 0) })
            p.family("clustermaker_node_scrape_timestamp_seconds", .gauge, help: "When cm-healthd last scraped the node's exporter (Unix time).",
                     nodes.compactMap { n in n.at.map { .init([("node", n.node.rawValue)], $0.timeIntervalSince1970) } })
            for (series, family, help) in nodeFamilies {
                let samples: [PrometheusText.Sample] = nodes.compactMap { n in n.values[series].map { .init([("node", n.node.rawValue)], $0) } }
                if !samples.isEmpty { p.family(family, .gauge, help: help + " From the node's exporter, scraped by cm-healthd.", samples) }
            }
        }
        var text = p.text
        if let lb = i.lb.value { text += lb.hasSuffix("\n") || lb.isEmpty ? lb : lb + "\n" }
        return text
    }
}

