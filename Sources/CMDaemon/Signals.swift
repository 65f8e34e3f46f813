import Dispatch
import Foundation
import Synchronization

/// Delivers SIGHUP/SIGTERM/SIGINT as an async sequence instead of async-signal-unsafe handlers.
public final class SignalStream: Sendable {
    public let signals: AsyncStream<CInt>
    /// Kept alive for the stream's lifetime; Mutex only to make the class Sendable.
    private let sources: Mutex<[any DispatchSourceSignal]>

    public init(_ numbers: [CInt]) {
        let (stream, continuation) = AsyncStream.makeStream(of: CInt.self)
        var sources: [any DispatchSourceSignal] = []
        for number in numbers {
            signal(number, SIG_IGN)  // the dispatch source sees it; the default action must not run
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        self.signals = stream
        self.sources = Mutex(sources)
    }

    deinit {
        sources.withLock { for source in $0 { source.cancel() } }
    }
}
