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
        public init(statuses: [(daemon: SuiteDaemon, answer: SuiteClient.Answer<DaemonStatus>)], checks: SuiteClient.Answer<[CheckStatus]>,
                    vip: SuiteClient.Answer<VipStatusReply>, pxe: SuiteClient.Answer<PxeStatusReply>, state: SuiteClient.Answer<StateStatusReply>,
                    lb: SuiteClient.Answer<String>) {
            self.statuses = statuses
            self.checks = checks
            self.vip = vip
            self.pxe = pxe
            self.state = state
            self.lb = lb
        }
    }

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
        var text = p.text
        if let lb = i.lb.value { text += lb.hasSuffix("\n") || lb.isEmpty ? lb : lb + "\n" }
        return text
    }
}

