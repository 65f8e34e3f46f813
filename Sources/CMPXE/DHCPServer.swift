import CMTypes
import Foundation
import Logging
import PXEProtocols

/// The DHCP sockets: UDP 67 on the boot interface (full DHCP or proxyDHCP) and, for
/// proxyDHCP, UDP 4011 where PXE clients ask for their boot file. One thread per socket;
/// each datagram is answered before the next is read, so leases are decided in order.
final class DHCPServer: Sendable {
    private let service: PXEService
    private let sockets: [(UDPSocket, UInt16)]
    private let stopping = Flag()
    private let logger: Logger

    init(service: PXEService, interface: String, proxy: Bool, logger: Logger) throws {
        self.service = service
        self.logger = logger
        let any = IPv4Address(rawValue: 0)
        var sockets = [(try UDPSocket(bind: any, port: DHCP.serverPort, device: interface, broadcast: true), DHCP.serverPort)]
        if proxy { sockets.append((try UDPSocket(bind: any, port: DHCP.proxyPort, device: interface, broadcast: true), DHCP.proxyPort)) }
        for (s, _) in sockets {
            s.setReceiveTimeout(.milliseconds(500))
            s.setBufferSizes(4 << 20)
        }
        self.sockets = sockets
    }

    func start() {
        for (socket, port) in sockets {
            startThread(named: "dhcp \(port)") { [self] in serve(socket, port: port) }
        }
    }

    func stop() { stopping.set() }

    private func serve(_ socket: UDPSocket, port: UInt16) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopping.isSet {
            do {
                guard let (n, from) = try socket.receive(into: &buffer) else { continue }
                guard let reply = service.handleDHCP(buffer[0..<n], port: port, from: from) else { continue }
                try socket.send(reply.bytes, to: reply.to)
            } catch {
                logger.error("DHCP port \(port): \(error)")
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}
