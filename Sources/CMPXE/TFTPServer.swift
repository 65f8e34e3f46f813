import CMTypes
import Foundation
import Logging
import PXEProtocols
#if canImport(Glibc)
import Glibc
#endif

/// Read-only TFTP server rooted at the boot directory (RFC 1350, options RFC 2347-2349 and
/// windowsize RFC 7440). The request socket's thread parses requests; each transfer runs on
/// its own thread and socket (the TID of RFC 1350), retransmitting with back-off.
final class TFTPServer: @unchecked Sendable {
    struct Settings: Sendable {
        var root: String
        var port: UInt16
        var maxBlockSize: Int
        var maxWindowSize: Int
        var retries: Int
        var maxTransfers = 512
    }

    let settings: Settings
    let counters: Counters
    let logger: Logger
    private let socket: UDPSocket
    private let realRoot: String
    private let stopping = Flag()
    private let active = Counters()

    init(settings: Settings, counters: Counters, logger: Logger) throws {
        self.settings = settings
        self.counters = counters
        self.logger = logger
        guard let real = realpath(settings.root, nil) else { throw UDPSocket.Failure("TFTP root \(settings.root)") }
        realRoot = String(cString: real)
        free(real)
        socket = try UDPSocket(bind: IPv4Address(rawValue: 0), port: settings.port)
        socket.setReceiveTimeout(.milliseconds(500))
    }

    var port: UInt16 { socket.localPort }

    func start() {
        startThread(named: "tftp") { [self] in serve() }
    }

    func stop() { stopping.set() }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.isSet {
            let got: (count: Int, from: IPv4Endpoint)?
            do { got = try socket.receive(into: &buffer) } catch {
                logger.error("TFTP: \(error)")
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            guard let (n, client) = got else { continue }
            let packet: TFTPPacket
            do { packet = try TFTPPacket(parsing: buffer[0..<n]) } catch {
                counters.add("tftp_malformed")
                logger.notice("TFTP: malformed request from \(client) dropped: \(error)")
                continue
            }
            switch packet {
            case .readRequest(let file, let mode, let options):
                guard active.value("transfers") < settings.maxTransfers else {
                    reject(client, .notDefined, "server busy: \(settings.maxTransfers) transfers running")
                    continue
                }
                active.add("transfers")
                startThread(named: "tftp \(client)") { [self] in
                    defer { active.add("transfers", -1) }
                    transfer(file: file, mode: mode, options: options, to: client)
                }
            case .writeRequest(let file, _, _):
                counters.add("tftp_refused")
                logger.warning("TFTP: write request for \"\(file)\" from \(client) refused: the server is read-only")
                reject(client, .accessViolation, "read-only server")
            default:
                counters.add("tftp_malformed")
                logger.notice("TFTP: \(client) sent a packet that is not a request to the request port")
                reject(client, .illegalOperation, "not a request")
            }
        }
    }

    /// An error from a fresh socket, as RFC 1350 answers a request it will not serve.
    private func reject(_ client: IPv4Endpoint, _ code: TFTPErrorCode, _ message: String) {
        guard let s = try? UDPSocket(bind: IPv4Address(rawValue: 0), port: 0, reuse: false) else { return }
        try? s.send(TFTPPacket.error(code: code, message: message).serialize(), to: client)
    }

    /// The file under the root `requested` names, or why not. Symlinks are followed only when
    /// they end inside the root.
    func resolve(_ requested: String) -> Result<String, TFTPRefusal> {
        let parts: [String]
        do { parts = try TFTPPath.components(of: requested) } catch { return .failure(.init(code: .accessViolation, why: "\(error)")) }
        let candidate = realRoot + "/" + parts.joined(separator: "/")
        guard let real = realpath(candidate, nil) else {
            return .failure(.init(code: .fileNotFound, why: errno == ENOENT ? "no such file" : String(cString: strerror(errno))))
        }
        let resolved = String(cString: real)
        free(real)
        guard resolved.hasPrefix(realRoot + "/") else { return .failure(.init(code: .accessViolation, why: "leads outside the boot directory (symlink)")) }
        return .success(resolved)
    }

    private func transfer(file: String, mode: String, options: [TFTPOption], to client: IPv4Endpoint) {
        counters.add("tftp_requests")
        let path: String
        switch resolve(file) {
        case .failure(let refusal):
            counters.add("tftp_refused")
            logger.warning("TFTP: \(client) asked for \"\(file)\": refused, \(refusal.why)")
            reject(client, refusal.code, refusal.why)
            return
        case .success(let p): path = p
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            if fd >= 0 { close(fd) }
            counters.add("tftp_refused")
            logger.warning("TFTP: \(client) asked for \"\(file)\": not a readable regular file")
            reject(client, .fileNotFound, "not a readable file")
            return
        }
        defer { close(fd) }
        let socket: UDPSocket
        do {
            socket = try UDPSocket(bind: IPv4Address(rawValue: 0), port: 0, reuse: false)
            try socket.connect(to: client)
        } catch {
            logger.error("TFTP: transfer socket for \(client): \(error)")
            return
        }
        socket.setBufferSizes(1 << 20)
        let size = Int(st.st_size)
        let n = TFTPNegotiation(requested: options, fileSize: size, maxBlockSize: settings.maxBlockSize, maxWindowSize: settings.maxWindowSize)
        if mode.lowercased() != "octet" { logger.debug("TFTP: \(client) asked for mode \(mode); sending the file as it is") }
        let started = ContinuousClock.now
        var session = Session(socket: socket, fd: fd, size: size, blockSize: n.blockSize, window: n.windowSize,
                              timeout: .seconds(n.timeoutSeconds), retries: settings.retries)
        let outcome = session.run(oack: n.acknowledged.isEmpty ? nil : TFTPPacket.optionAck(n.acknowledged).serialize())
        switch outcome {
        case .done:
            counters.add("tftp_completed")
            counters.add("tftp_bytes", size)
            let seconds = (ContinuousClock.now - started).seconds
            logger.info("TFTP: sent \(file) (\(size) bytes, blksize \(n.blockSize), windowsize \(n.windowSize)) to \(client) in \(String(format: "%.2f", seconds)) s")
        case .failed(let why):
            counters.add("tftp_failed")
            logger.warning("TFTP: sending \(file) to \(client) failed: \(why)")
        }
    }

    /// One transfer: windows of DATA, ACKs, retransmission with doubling timeout.
    struct Session {
        enum Outcome { case done, failed(String) }
        let socket: UDPSocket
        let fd: Int32
        let size: Int
        let blockSize: Int
        let window: Int
        var timeout: Duration
        let retries: Int

        var lastBlock: Int { size / blockSize + 1 }

        mutating func run(oack: [UInt8]?) -> Outcome {
            var receive = [UInt8](repeating: 0, count: 1024)
            let initialTimeout = timeout
            if let oack {
                var tries = 0
                acknowledged: while true {
                    guard oack.withUnsafeBytes({ socket.send($0) }) else { return .failed("send: \(String(cString: strerror(errno)))") }
                    let deadline = ContinuousClock.now + timeout
                    while ContinuousClock.now < deadline {
                        guard let n = socket.receive(into: &receive, timeout: deadline - ContinuousClock.now) else { break }
                        switch try? TFTPPacket(parsing: receive[0..<n]) {
                        case .ack(0): break acknowledged
                        case .error(let code, let message): return .failed("client answered the options with error \(code.rawValue): \(message)")
                        default: continue  // a stray datagram: wait on for the ACK, no sooner resend
                        }
                    }
                    tries += 1
                    if tries > retries { return .failed("no ACK of the options after \(retries) retries") }
                    timeout = min(timeout * 2, .seconds(16))
                }
                timeout = initialTimeout
            }
            var packet = [UInt8](repeating: 0, count: 4 + blockSize)
            packet[1] = UInt8(TFTPPacket.Opcode.data.rawValue)
            var base = 1, tries = 0
            while base <= lastBlock {
                let end = min(base + window, lastBlock + 1)
                for i in base..<end {
                    guard send(block: i, in: &packet) else { return .failed("send: \(String(cString: strerror(errno)))") }
                }
                let deadline = ContinuousClock.now + timeout
                var progressed = false
                while ContinuousClock.now < deadline {
                    guard let n = socket.receive(into: &receive, timeout: deadline - ContinuousClock.now) else { break }
                    switch try? TFTPPacket(parsing: receive[0..<n]) {
                    case .ack(let block):
                        // The window's block whose number (mod 2^16) this acknowledges.
                        let delta = Int(block &- UInt16(truncatingIfNeeded: base - 1))
                        guard delta >= 1, delta <= end - base else { continue }  // old or duplicate
                        base += delta
                        progressed = true
                    case .error(let code, let message):
                        return .failed("client sent error \(code.rawValue): \(message)")
                    default:
                        continue
                    }
                    break
                }
                if progressed {
                    tries = 0
                    timeout = initialTimeout
                } else {
                    tries += 1
                    if tries > retries { return .failed("no ACK for block \(base) after \(retries) retries") }
                    timeout = min(timeout * 2, .seconds(16))
                }
            }
            return .done
        }

        private func send(block i: Int, in packet: inout [UInt8]) -> Bool {
            let offset = (i - 1) * blockSize
            let length = max(0, min(blockSize, size - offset))
            let number = UInt16(truncatingIfNeeded: i)
            packet[2] = UInt8(number >> 8)
            packet[3] = UInt8(number & 0xff)
            return packet.withUnsafeMutableBytes { b -> Bool in
                var got = 0
                while got < length {
                    let r = pread(fd, b.baseAddress! + 4 + got, length - got, off_t(offset + got))
                    if r <= 0 { return false }
                    got += r
                }
                return socket.send(UnsafeRawBufferPointer(rebasing: b[0..<(4 + length)]))
            }
        }
    }
}

struct TFTPRefusal: Error {
    var code: TFTPErrorCode
    var why: String
}
