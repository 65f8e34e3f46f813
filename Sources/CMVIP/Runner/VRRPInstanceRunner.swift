import CMConfig
import CMTypes
import CMWire
import Foundation
import CLinux
import Glibc
import Logging
import Synchronization
import VRRP

/// The shell around one `VRRPStateMachine`: a thread of its own that polls the raw VRRP socket,
/// the link monitor and a wake-up eventfd, keeps the one timer, and does what the machine asks
/// (send adverts, add/remove addresses, gratuitous ARP). A thread, not a task, so that a busy
/// cooperative pool can never make an advert late; with `realtime_priority` it runs SCHED_RR.
public final class VRRPInstanceRunner: Sendable {
    public struct Transition: Sendable {
        public var instance: String
        public var from: VRRPStateMachine.State
        public var to: VRRPStateMachine.State
        public var priority: Int
        public var reason: String
        public var at: Date
    }

    enum Command: Sendable {
        case shutdown
        case trackedChecksDown([CheckID])
        case preemptHold(String?)
    }

    struct Counters: Sendable {
        var state: VRRPStateMachine.State = .initialize
        var priority: Int
        var masterAddress: IPv4Address?
        var since = Date()
        var transitions = 0
        var advertsSent = 0
        var advertsReceived = 0
        var dropped: [String: Int] = [:]
        var trackedDown: [String] = []
        var preemptHeld: String?
        var lastError: String?
    }

    public let config: VRRPInstanceConfig
    let realtimePriority: Int
    let logger: Logger
    let onTransition: @Sendable (Transition) -> Void
    private let commands = Mutex<[Command]>([])
    private let counters: Mutex<Counters>
    private let wakeFD: Int32
    private let timerFD: Int32
    private let finished = Mutex<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    public init(config: VRRPInstanceConfig, realtimePriority: Int, logger: Logger, onTransition: @escaping @Sendable (Transition) -> Void) throws(SystemError) {
        self.config = config
        self.realtimePriority = realtimePriority
        var logger = logger
        logger[metadataKey: "instance"] = "\(config.name)"
        self.logger = logger
        self.onTransition = onTransition
        self.counters = Mutex(Counters(priority: config.priority))
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("eventfd") }
        let timer = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK) | Int32(TFD_CLOEXEC))
        guard timer >= 0 else {
            close(fd)
            throw SystemError("timerfd_create")
        }
        wakeFD = fd
        timerFD = timer
    }

    deinit {
        close(wakeFD)
        close(timerFD)
    }

    /// Starts the instance's thread.
    public func start() {
        startThread(named: "vrrp-\(config.name)") { [self] in
            var loop = Loop(runner: self)
            loop.run()
            finished.withLock { $0 = true }
            done.signal()
        }
    }

    /// Stops gracefully (a master sends priority 0 and removes its addresses) and waits, at most `timeout`.
    public func stop(timeout: Duration = .seconds(2)) {
        send(.shutdown)
        let ms = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        _ = done.wait(timeout: .now() + .milliseconds(ms))
    }

    func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    public func setTrackedChecksDown(_ down: [CheckID]) { send(.trackedChecksDown(down)) }

    /// Holds preemption back (why), or lets it go (nil): `preempt_after_sync`.
    public func holdPreemption(_ reason: String?) { send(.preemptHold(reason)) }

    public func status() -> VRRPInstanceStatus {
        let c = counters.withLock { $0 }
        return VRRPInstanceStatus(
            name: config.name, interface: config.interface, vrid: config.vrid, state: VRRPInstanceState(rawValue: c.state.rawValue) ?? .initialize,
            priority: c.priority, configuredPriority: config.priority, advertIntervalMs: Int(config.advertIntervalCentiseconds) * 10,
            masterAddress: c.masterAddress, addresses: config.addresses, since: c.since, transitions: c.transitions,
            advertsSent: c.advertsSent, advertsReceived: c.advertsReceived, dropped: c.dropped, trackedDown: c.trackedDown, lastError: c.lastError,
            vmacInterface: config.useVMAC ? config.vmacInterface : nil, preemptHeld: c.preemptHeld)
    }

    /// Everything the thread owns; lives on the thread's stack.
    struct Loop {
        let runner: VRRPInstanceRunner
        var config: VRRPInstanceConfig { runner.config }
        var machine: VRRPStateMachine?
        var socket: VRRPSocket?
        var monitor: FileDescriptor?
        var route: Netlink.RouteSocket?
        var arp: GratuitousARP?
        var interface: NetworkInterface?
        /// The virtual-MAC interface on top of `interface`, with `use_vmac`.
        var vmac: NetworkInterface?
        var source: IPv4Address?
        var deadline: ContinuousClock.Instant?
        var timer: VRRPStateMachine.Timer = .masterDown
        var garp: GratuitousARPSchedule
        /// Which parsed datagrams are adverts for this instance; its own address is set at start.
        var receiveFilter: VRRPReceiveFilter
        var checksDown: [CheckID] = []
        /// Why preemption is held, kept here so that a machine made after the hold starts with it.
        var preemptHeld: String?
        var interfacesDown: [String] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        var stopping = false

        init(runner: VRRPInstanceRunner) {
            self.runner = runner
            garp = GratuitousARPSchedule(count: runner.config.garpCount, interval: runner.config.garpInterval,
                                         repeatAfter: runner.config.garpMasterDelay)
            receiveFilter = VRRPReceiveFilter(vrid: UInt8(runner.config.vrid), ownAddress: nil, unicastPeers: runner.config.unicastPeers,
                                              addresses: Set(runner.config.addresses.map(\.address)))
        }

        var logger: Logger { runner.logger }

        mutating func run() {
            setRealtime()
            do {
                monitor = try Netlink.linkMonitor()
                route = try Netlink.RouteSocket()
                arp = try GratuitousARP()
            } catch {
                fail("\(error)")
            }
            refreshInterfaces(now: .now)
            while !stopping {
                waitForWork()
                let now = ContinuousClock.now
                for command in runner.commands.withLock({ q in defer { q.removeAll() }; return q }) {
                    switch command {
                    case .shutdown:
                        stopping = true
                    case .trackedChecksDown(let down):
                        checksDown = down
                        updatePriority()
                    case .preemptHold(let reason):
                        if (reason == nil) != (preemptHeld == nil) {
                            logger.notice(reason.map { "preemption held: \($0)" } ?? "preemption allowed again")
                        }
                        preemptHeld = reason
                        runner.counters.withLock { $0.preemptHeld = reason }
                        handle(.preemptHold(reason))
                    }
                }
                if stopping { break }
                receiveAll(now: now)
                if let d = deadline, d <= .now {
                    deadline = nil
                    handle(.timerFired(timer, now: .now))
                }
                if let g = garp.deadline, g <= .now { sendGratuitousARPs() }
            }
            if machine != nil { handle(.shutdown) }
            if config.useVMAC, let route {
                do {
                    try VirtualMAC.remove(name: config.vmacInterface, parent: config.interface, route: route)
                } catch {
                    logger.warning("\(error)")
                }
            }
        }

        /// Where adverts, addresses and gratuitous ARPs go: the virtual-MAC interface with
        /// `use_vmac`, else the configured one.
        private var dataInterface: NetworkInterface? { config.useVMAC ? vmac : interface }

        /// Looks up the virtual-MAC interface, creating it when missing (first start, or deleted by hand).
        private mutating func ensureVirtualMAC(parent: NetworkInterface) -> Bool {
            guard config.useVMAC else { return true }
            if let existing = NetworkInterface.lookup(config.vmacInterface), existing.mac == VirtualMAC.address(vrid: config.vrid), vmac != nil {
                vmac = existing
                return true
            }
            guard let route else { return false }
            do {
                vmac = try VirtualMAC.create(name: config.vmacInterface, vrid: config.vrid, parent: parent, route: route)
                logger.info("virtual MAC \(VirtualMAC.address(vrid: config.vrid)) on \(config.vmacInterface) over \(parent.name)")
                return true
            } catch {
                vmac = nil
                fail("\(error)")
                return false
            }
        }

        private mutating func setRealtime() {
            guard runner.realtimePriority > 0 else { return }
            var policy: Int32 = 0
            var param = sched_param()
            pthread_getschedparam(pthread_self(), &policy, &param)
            if policy == SCHED_RR || policy == SCHED_FIFO { return }  // the unit set it already
            param.sched_priority = Int32(runner.realtimePriority)
            let err = pthread_setschedparam(pthread_self(), SCHED_RR, &param)
            if err != 0 {
                logger.notice("runs with normal scheduling: SCHED_RR \(runner.realtimePriority) refused: \(String(cString: strerror(err)))")
            }
        }

        /// Sleeps in poll(2) until a packet, a link change, a command or the next deadline; the
        /// deadline is a timerfd, so it has nanosecond resolution where poll's timeout has milliseconds.
        private mutating func waitForWork() {
            var fds = [pollfd(fd: runner.wakeFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: runner.timerFD, events: Int16(POLLIN), revents: 0)]
            if let socket { fds.append(pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)) }
            if let monitor { fds.append(pollfd(fd: monitor.fd, events: Int16(POLLIN), revents: 0)) }
            var spec = itimerspec()
            if let next = [deadline, garp.deadline].compactMap({ $0 }).min() {
                // A zero it_value disarms the timer: a deadline already passed fires after 1 ns.
                let wait = max(next - .now, .nanoseconds(1))
                spec.it_value = timespec(tv_sec: Int(wait.components.seconds), tv_nsec: Int(wait.components.attoseconds / 1_000_000_000))
            }
            timerfd_settime(runner.timerFD, 0, &spec, nil)
            let rc = poll(&fds, nfds_t(fds.count), -1)
            guard rc > 0 else { return }
            for p in fds where p.revents != 0 {
                if p.fd == runner.wakeFD || p.fd == runner.timerFD {
                    var value: UInt64 = 0
                    _ = read(p.fd, &value, 8)
                } else if p.fd == monitor?.fd {
                    Netlink.drain(p.fd)
                    refreshInterfaces(now: .now)
                }
            }
        }

        // MARK: Interfaces

        /// Re-reads the instance's interface and the tracked ones; starts, faults or recovers.
        private mutating func refreshInterfaces(now: ContinuousClock.Instant) {
            let current = NetworkInterface.lookup(config.interface)
            let down = config.trackInterfaces.filter { NetworkInterface.lookup($0)?.isUp != true }
            if down != interfacesDown {
                interfacesDown = down
                if !down.isEmpty { logger.warning("tracked interfaces down: \(down.joined(separator: ", "))") }
                updatePriority()
            }
            guard let current else {
                if interface != nil || machine == nil { fail("no interface \(config.interface)") }
                interface = nil
                if machine != nil { handle(.interfaceDown) }
                socket = nil
                return
            }
            let wasUp = interface?.isUp ?? false
            interface = current
            if machine == nil {
                guard let primary = config.sourceAddress ?? current.addresses.first(where: { a in !config.addresses.contains { $0.address == a } }) else {
                    fail("\(config.interface) has no IPv4 address to send advertisements from")
                    return
                }
                source = primary
                receiveFilter.ownAddress = primary
                guard ensureVirtualMAC(parent: current), let data = dataInterface else { return }
                do {
                    socket = try VRRPSocket(interface: data, multicast: config.unicastPeers.isEmpty)
                } catch {
                    fail("\(error)")
                    return
                }
                // Addresses a killed predecessor left behind are not ours until we are master again.
                removeAddresses()
                if config.useVMAC { removeAddresses(from: current) }
                var m = VRRPStateMachine(configuration: .init(
                    priority: UInt8(config.priority), advertisementInterval: config.advertIntervalCentiseconds,
                    preempt: config.preempt, preemptDelay: config.preemptDelay, primaryAddress: primary))
                _ = m.handle(.priorityChanged(effectivePriority))
                _ = m.handle(.preemptHold(preemptHeld))
                machine = m
                runner.counters.withLock { $0.lastError = nil }
                logger.info("VRRP instance \(config.name): VRID \(config.vrid) on \(config.interface) from \(primary), priority \(config.priority), adverts every \(config.advertIntervalCentiseconds * 10) ms")
                handle(current.isUp ? .startup(now: now) : .interfaceDown)
                return
            }
            if current.isUp != wasUp || (current.isUp && machine?.state == .fault) {
                if current.isUp {
                    // The link came back: a fresh socket, since the old one may have lost its membership.
                    if ensureVirtualMAC(parent: current), let data = dataInterface {
                        do {
                            socket = try VRRPSocket(interface: data, multicast: config.unicastPeers.isEmpty)
                        } catch {
                            fail("\(error)")
                        }
                    }
                    handle(.interfaceUp(now: now))
                } else {
                    handle(.interfaceDown)
                }
            }
        }

        private var effectivePriority: UInt8 {
            VRRPTracking.priority(configured: config.priority, down: checksDown.count + interfacesDown.count, weight: config.trackWeight)
        }

        private mutating func updatePriority() {
            let trackedDown = checksDown.map(\.description) + interfacesDown.map { "interface \($0)" }
            runner.counters.withLock { $0.trackedDown = trackedDown }
            guard machine != nil else { return }
            let p = effectivePriority
            if p != machine?.priority {
                logger.notice("priority \(machine?.priority ?? 0) -> \(p): \(trackedDown.isEmpty ? "all tracked items up" : "down: " + trackedDown.joined(separator: ", "))")
                handle(.priorityChanged(p))
            }
        }

        // MARK: Receiving

        private mutating func receiveAll(now: ContinuousClock.Instant) {
            guard let socket else { return }
            while true {
                let n: Int?
                do {
                    n = try socket.receive(into: &buffer)
                } catch {
                    logger.warning("\(error)")
                    return
                }
                guard let n else { return }
                received(buffer.prefix(n), now: now)
            }
        }

        private mutating func received(_ bytes: ArraySlice<UInt8>, now: ContinuousClock.Instant) {
            let datagram: VRRPDatagram
            do {
                datagram = try VRRPDatagram(parsing: bytes)
            } catch {
                drop(error.reason, "dropped a datagram on \(config.interface): \(error)")
                return
            }
            switch receiveFilter.check(datagram) {
            case .drop(let reason, let message):
                drop(reason, message)
                return
            case .accept(let addressMismatch):
                if addressMismatch { runner.counters.withLock { $0.dropped["address_mismatch", default: 0] += 1 } }
            }
            let advert = datagram.advertisement
            runner.counters.withLock { $0.advertsReceived += 1 }
            handle(.advertisement(priority: advert.priority, maxAdvertInterval: advert.maxAdvertInterval, source: datagram.source, now: now))
        }

        private func drop(_ reason: String, _ message: String?) {
            let count = runner.counters.withLock { c -> Int in
                c.dropped[reason, default: 0] += 1
                return c.dropped[reason, default: 0]
            }
            // Logged for the first few of each reason and then every 1000th, so a flood cannot fill the journal.
            if let message, count <= 5 || count % 1000 == 0 { logger.warning("\(message) (\(count) so far)") }
        }

        // MARK: Acting

        private mutating func handle(_ event: VRRPStateMachine.Event) {
            guard var m = machine else { return }
            let actions = m.handle(event)
            machine = m
            for action in actions { perform(action) }
            runner.counters.withLock {
                $0.priority = Int(m.priority)
                $0.masterAddress = m.masterAddress
            }
        }

        private mutating func perform(_ action: VRRPStateMachine.Action) {
            switch action {
            case .sendAdvertisement(let priority):
                sendAdvertisement(priority: priority)
            case .setTimer(let which, let after):
                timer = which
                deadline = .now + after
            case .cancelTimer:
                deadline = nil
            case .addAddresses:
                guard let interface = dataInterface, let route else { return }
                for a in config.addresses {
                    do {
                        try Netlink.addAddress(a, interface: interface, on: route)
                    } catch {
                        fail("\(error)")
                    }
                }
            case .removeAddresses:
                removeAddresses()
            case .sendGratuitousARP:
                garp.becameMaster(now: .now)
                sendGratuitousARPs()
            case .transition(let from, let to, let reason):
                let priority = Int(machine?.priority ?? 0)
                let level: Logger.Level = to == .fault ? .error : .notice
                logger.log(level: level, "\(config.name): \(from.rawValue) -> \(to.rawValue): \(reason)")
                if from != to {  // master → master reports a split brain; the state stays
                    runner.counters.withLock {
                        $0.state = to
                        $0.since = Date()
                        $0.transitions += 1
                    }
                }
                runner.onTransition(Transition(instance: config.name, from: from, to: to, priority: priority, reason: reason, at: Date()))
            }
        }

        private mutating func sendAdvertisement(priority: UInt8) {
            guard let socket, let source else { return }
            let advert = VRRPAdvertisement(vrid: UInt8(config.vrid), priority: priority, maxAdvertInterval: config.advertIntervalCentiseconds,
                                           addresses: config.addresses.map(\.address))
            let destinations = config.unicastPeers.isEmpty ? [VRRP.multicastGroup] : config.unicastPeers
            for destination in destinations {
                do {
                    try socket.send(advert.serialize(source: source, destination: destination), from: source, to: destination)
                    runner.counters.withLock { $0.advertsSent += 1 }
                } catch {
                    runner.counters.withLock { $0.lastError = "\(error)" }
                    let count = runner.counters.withLock { c -> Int in c.dropped["send_failed", default: 0] += 1; return c.dropped["send_failed", default: 0] }
                    if count <= 5 || count % 1000 == 0 { logger.warning("\(error) (\(count) so far)") }
                }
            }
        }

        /// Sends the gratuitous ARPs `garp` says are due; none once this router is no longer master.
        private mutating func sendGratuitousARPs() {
            guard machine?.state == .master else {
                garp.stop()
                return
            }
            let n = garp.due(now: .now)
            guard n > 0, let interface = dataInterface, let mac = interface.mac, let arp else { return }
            for _ in 0..<n {
                do {
                    try arp.send(config.addresses.map(\.address), interface: interface, mac: mac)
                } catch {
                    logger.warning("\(error)")
                }
            }
        }

        private func removeAddresses(from target: NetworkInterface? = nil) {
            guard let interface = target ?? dataInterface, let route else { return }
            for a in config.addresses {
                do {
                    try Netlink.removeAddress(a, interface: interface, on: route)
                } catch {
                    logger.warning("\(error)")
                }
            }
        }

        private func fail(_ message: String) {
            logger.error("\(message)")
            runner.counters.withLock { $0.lastError = message }
        }
    }
}
