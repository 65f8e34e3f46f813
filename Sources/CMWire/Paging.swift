/// Lists travel in pages, so that no answer outgrows one frame (1 MiB) however many nodes
/// and checks a master has. A list request carries a `cursor` (nil: from the start) and gets
/// one page of items and the cursor of the next page (nil: that was the last).
/// `WireConnection.requestAll` follows the cursors; the daemon keeps no state between pages.
public protocol PagedRequest: Encodable, Sendable {
    var cursor: String? { get set }
}

public protocol PagedReply: Decodable {
    associatedtype Item
    var items: [Item] { get }
    var next: String? { get }
}

public enum Paging {
    /// Items in one page: the largest list item (a node, about 400 bytes of JSON) times this
    /// stays well inside one frame.
    public static let pageSize = 500

    /// The page of `sorted` (in ascending order of `key`, keys unique) that follows `cursor`,
    /// and the cursor of the page after it.
    public static func page<T>(_ sorted: [T], key: (T) -> String, after cursor: String?, size: Int = pageSize) -> (items: [T], next: String?) {
        var start = 0
        if let cursor {
            // The first item whose key is past the cursor: binary search, as the list is sorted.
            var lo = 0, hi = sorted.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if key(sorted[mid]) <= cursor { lo = mid + 1 } else { hi = mid }
            }
            start = lo
        }
        let end = min(sorted.count, start + max(1, size))
        let items = Array(sorted[start..<end])
        return (items, end < sorted.count ? items.last.map(key) : nil)
    }
}

extension WireConnection {
    /// Every item of a paged list: the first page, then each next one, until the last.
    /// `limit` stops early (history); a daemon that repeats a cursor is an error, not a loop.
    public func requestAll<Request: PagedRequest, Reply: PagedReply>(
        _ type: String, _ request: Request, as: Reply.Type = Reply.self, limit: Int = .max
    ) async throws -> [Reply.Item] {
        var request = request
        var items: [Reply.Item] = []
        var seen: Set<String> = []
        while true {
            let page = try await self.request(type, request, as: Reply.self)
            items += page.items
            guard let next = page.next, items.count < limit else { return Array(items.prefix(limit)) }
            guard seen.insert(next).inserted else { throw WireError(.badEnvelope, "\(daemon) repeated the cursor \(next) of \(type)") }
            request.cursor = next
        }
    }
}
