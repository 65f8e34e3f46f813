import ArgumentParser
import CMWire
import Foundation

struct Vip: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Virtual IPs (cm-vipd): VRRP instances and this master's role.",
        subcommands: [Status.self, Watch.self],
        defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the role and every VRRP instance: state, priority, master, time in state, transitions, drops.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let reply = try await global.call(.vipd) { conn in
                    try await conn.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self)
                }
                if global.json { return try printJSON(reply) }
                print("role: \(reply.role.rawValue) (epoch \(reply.epoch), from instance \(reply.roleInstance ?? "-"))")
                var table = Table("INSTANCE", "IF", "VRID", "STATE", "PRIO", "MASTER", "SINCE", "TRANS", "SENT", "RECV", "DROPPED", "ADDRESSES")
                for i in reply.instances {
                    let prio = i.priority == i.configuredPriority ? "\(i.priority)" : "\(i.priority)/\(i.configuredPriority)"
                    let dropped = i.dropped.values.reduce(0, +)
                    table.add(i.name, i.vmacInterface.map { "\($0)@\(i.interface)" } ?? i.interface, String(i.vrid), i.state.rawValue, prio, i.masterAddress?.description ?? "-",
                              Format.age(since: i.since), String(i.transitions), String(i.advertsSent), String(i.advertsReceived),
                              String(dropped), i.addresses.map(\.description).joined(separator: ","))
                }
                print(table.render())
                for i in reply.instances {
                    if !i.trackedDown.isEmpty { print("\(i.name): tracked down: \(i.trackedDown.joined(separator: ", "))") }
                    // Only a backup preempts: on a master the hold means nothing yet.
                    if let h = i.preemptHeld, i.state == .backup { print("\(i.name): preemption held: \(h)") }
                    if !i.dropped.isEmpty {
                        print("\(i.name): dropped " + i.dropped.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
                    }
                    if let e = i.lastError { print("\(i.name): last error: \(e)") }
                }
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stream VRRP transitions and role changes until interrupted.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await global.call(.vipd) { conn in
                    try await conn.subscribe(topics: [Topic.vip])
                    announceWatching("cm-vipd", json: global.json)
                    while let event = try await conn.nextEvent() {
                        switch event.header.type {
                        case MessageType.vipTransition:
                            let t = try event.body(as: VipTransition.self)
                            if global.json { try printJSONLine(t); continue }
                            print("\(Format.time(t.at))  \(t.instance)  \(t.from.rawValue) -> \(t.to.rawValue)  priority \(t.priority)  \(t.reason)")
                        case MessageType.vipRole:
                            let r = try event.body(as: VipRoleChange.self)
                            if global.json { try printJSONLine(r); continue }
                            print("\(Format.time(r.at))  role \(r.role.rawValue)  epoch \(r.epoch)")
                        default:
                            continue
                        }
                        fflush(nil)
                    }
                    throw CLIError.failed("cm-vipd closed the connection")
                }
            }
        }
    }
}
